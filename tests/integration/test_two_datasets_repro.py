"""`dvc repro` over a binary 2D dataset and a multi-class volume dataset with one params.yaml, in
automated and box modes, for a decoder-only and an encoder+decoder strategy (tiny synthetic stand-ins in
the datasets' download layouts: BUSI PNGs and the MSD hippocampus task)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import busi_layout as _busi
from helpers import hippocampus_layout as _hippocampus
from helpers import project_copy, run_tool, tiny_params

pytestmark = pytest.mark.slow  # about 3-6 minutes on 2 cores: 8 trainings and evaluations
MODES, STRATEGIES = ["automated", "box"], ["vit_t_dec_vanilla", "vit_t_endec_lora"]


def _params() -> dict:
    params = tiny_params()
    params["sample"]["datasets"] = []
    params["ingest"].update(datasets=["us_breast", "mri_hippocampus"], overrides={}, image_size=64)
    params["finetune"].update(modes=MODES, strategies=STRATEGIES, profiles=["full"], max_epochs=1, batch_size=4)
    params["finetune"]["pretrained"]["inits"] = []  # from SAM's weights only: no pretraining on these datasets
    params["pretrain_mae"]["backbones"] = params["pretrain_sup"]["backbones"] = []
    params["evaluate"].update(bootstrap_samples=50, overlay_slices=2)
    return params


_run = run_tool


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's files (not the committed demo outputs), both datasets, one `dvc repro`."""
    root = tmp_path_factory.mktemp("two")
    _busi(root / "data/raw/us_breast")
    _hippocampus(root / "data/raw/mri_hippocampus")
    project_copy(root, _params(), skip=("results/", "models/"))
    _run(["dvc", "repro"], root)
    return root


def test_every_dataset_mode_and_strategy_is_trained_and_evaluated(project: Path) -> None:
    for dataset in ("us_breast", "mri_hippocampus"):
        for mode in MODES:
            for strategy in STRATEGIES:
                metrics = json.loads((project / f"results/runs/{dataset}/sam/full/{mode}/{strategy}/eval/metrics.json")
                                     .read_text())
                assert metrics["dataset"] == dataset and metrics["mode"] == mode and metrics["num_slices"] > 0


def test_each_dataset_brings_its_classes(project: Path) -> None:
    import torch

    for dataset, classes in (("us_breast", ["background", "lesion"]),
                             ("mri_hippocampus", ["background", "anterior hippocampus", "posterior hippocampus"])):
        automated = torch.load(project / f"models/{dataset}/sam/full/automated/vit_t_dec_vanilla/model.pt",
                               weights_only=True, map_location="cpu", mmap=True)
        assert automated["num_classes"] == len(classes) and automated["metadata"]["classes"] == classes
        box = torch.load(project / f"models/{dataset}/sam/full/box/vit_t_endec_lora/model.pt", weights_only=True,
                         map_location="cpu", mmap=True)
        assert box["num_classes"] == 2 and box["metadata"]["dataset_classes"]["names"] == classes


def test_the_report_covers_both_datasets_and_no_demo(project: Path) -> None:
    report = (project / "results/report/report.md").read_text()
    assert "| us_breast" in report and "| mri_hippocampus" in report and "| sample" not in report
    assert "posterior hippocampus" in report
    assert "Running stage" not in _run(["dvc", "repro"], project).stdout
