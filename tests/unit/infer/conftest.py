"""Models and runners for the ``medseg predict`` tests: a 1-epoch fine-tuned SAM (automated, records its
protocol), a tiny UNet baseline, an nnU-Net (planned, random init), a point model and original SAM with box
prompts (records no protocol)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from predict_helpers import metadata

from helpers import peft_config, tiny_params
from medseg.baselines.networks import BaselineSegmenter, baseline_spec, parse_baseline
from medseg.cli import main
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import model_spec
from medseg.models.segmenter import SamSegmenter


@pytest.fixture(scope="session")
def sam_model(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vit_t_dec_vanilla fine-tuned for one epoch on the phantom (automated; CT window recorded)."""
    from medseg.train.config import TrainConfig
    from medseg.train.finetune import finetune

    root = tmp_path_factory.mktemp("sam_model")
    config = dataclasses.replace(TrainConfig.from_params(tiny_params()), max_epochs=1)
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, root / "run", config, root / "work")
    return root / "run" / "model.pt"


@pytest.fixture(scope="session")
def unet_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny UNet baseline in the one model format (per-volume min-max protocol)."""
    torch.manual_seed(0)
    baseline = parse_baseline("unet", {"channels": [4, 8], "strides": [2], "num_res_units": 0})
    path = tmp_path_factory.mktemp("unet_model") / "model.pt"
    export_checkpoint(BaselineSegmenter(baseline, 64, 2), path, baseline_spec(baseline),
                      metadata("automated", strategy="unet", init="scratch", random_init=False))
    return path


@pytest.fixture(scope="session")
def nnunet_model(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nnU-Net's own 2d plans for the phantom's slices with a random-init network (no training; flagged)."""
    from nnunet_model import plan_random_init_nnunet

    root = tmp_path_factory.mktemp("nnunet_model")
    return plan_random_init_nnunet(ingested_sample, root / "work", root / "model" / "model.pt")


@pytest.fixture(scope="session")
def point_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A point-prompt SAM (class outputs, as the study's prompt fine-tuning exports them)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("point_model") / "model.pt"
    export_checkpoint(SamSegmenter("vit_t", 64, 2, "point"), path, model_spec("vit_t_dec_vanilla", peft_config()),
                      metadata("point", strategy="vit_t_dec_vanilla"))
    return path


@pytest.fixture(scope="session")
def box_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Original SAM (random init) with box prompts from ``medseg export_sam``: no recorded protocol."""
    path = tmp_path_factory.mktemp("box_model") / "model.pt"
    assert main(["export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "64", "--out", str(path)]) == 0
    return path


class Outcome(NamedTuple):
    code: int
    errors: list[str]


@pytest.fixture
def run_predict(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """``run_predict("--model", m, ...)``: the exit code and the error lines a user sees."""
    def run(*argv: str | Path) -> Outcome:
        capsys.readouterr()
        code = main(["predict", *(str(a) for a in argv)])
        err = capsys.readouterr().err
        return Outcome(code, [line for line in re.split(r"[\r\n]+", err) if ": error: " in line])
    return run
