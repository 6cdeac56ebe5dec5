"""Training in point and box modes, in bf16, and as two torchrun processes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.models.checkpoints import load_exported
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune


def _config(mode: str = "automated", **overrides: object) -> TrainConfig:
    config = TrainConfig.from_params(tiny_params(), mode=mode)
    return dataclasses.replace(config, augment=dataclasses.replace(config.augment, enabled=False), **overrides)


@pytest.mark.parametrize("mode", ["point", "box"])
def test_prompted_training_exports_a_prompted_model(mode: str, ingested_sample: Path, tmp_path: Path) -> None:
    summary = finetune("sample", "vit_t_dec_lora", ingested_sample, tmp_path / "out", _config(mode, max_epochs=1),
                       tmp_path / "work")
    model, metadata = load_exported(tmp_path / "out/model.pt")
    assert summary["mode"] == metadata["mode"] == model.mode == mode and 0.0 <= summary["best_val_dice"] <= 1.0
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    prompt = torch.tensor([[20.0, 20.0, 40.0, 40.0]])[:, : 2 if mode == "point" else 4]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64) * 255, prompt).shape == (1, 2, 64, 64)
    work = tmp_path / "work/sample/sam/full" / mode  # <dataset>/<init>/<profile>/<mode>
    assert work.is_dir() and not (work / "vit_t_dec_lora").exists()  # published, work dir dropped


def test_prompted_training_is_reproducible(ingested_sample: Path, tmp_path: Path) -> None:
    """Prompts come from the run's seed alone (no global random state): the same settings repeat the run."""
    for name in ("a", "b"):
        finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / name, _config("box", max_epochs=1),
                 tmp_path / f"w{name}")
    decoders = [load_exported(tmp_path / n / "model.pt")[0].mask_decoder.state_dict() for n in ("a", "b")]
    assert all(torch.equal(decoders[0][k], decoders[1][k]) for k in decoders[0])
    losses = [(tmp_path / n / "training/plots/metrics/train/loss.tsv").read_text() for n in ("a", "b")]
    assert losses[0] == losses[1]


def test_bf16_encoder_training_runs_on_the_cpu(ingested_sample: Path, tmp_path: Path) -> None:
    config = _config(max_epochs=1, precision="bf16", activation_checkpointing=True)
    summary = finetune("sample", "vit_t_endec_lora", ingested_sample, tmp_path / "out", config, tmp_path / "w")
    assert summary["precision"] == "bf16" and summary["device"] == "cpu"
    model, _ = load_exported(tmp_path / "out/model.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 under autocast


def _params_file(tmp_path: Path, name: str, batch_size: int) -> Path:
    params = tiny_params()
    params["finetune"].update(max_epochs=2, batch_size=batch_size, work_dir=str(tmp_path / f"work-{name}"),
                              num_threads=1, device="cpu")
    params["finetune"]["augment"]["enabled"] = False
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(launcher: list[str], data: Path, out: Path, params: Path) -> None:
    command = [*launcher, "finetune", "--dataset", "sample", "--strategy", "vit_t_dec_lora", "--data", str(data),
               "--out", str(out), "--params", str(params)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(ingested_sample: Path,
                                                                          tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "medseg.cli"]
    _run(torchrun, ingested_sample, tmp_path / "ddp", _params_file(tmp_path, "ddp", 4))
    _run([sys.executable, "-m", "medseg.cli"], ingested_sample, tmp_path / "single", _params_file(tmp_path, "one", 4))
    ddp, single = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in ("ddp", "single"))
    assert (ddp["processes"], single["processes"]) == (2, 1)
    assert ddp["best_val_dice"] == pytest.approx(single["best_val_dice"], abs=1e-4)
    losses = [(tmp_path / d / "training/plots/metrics/train/loss.tsv").read_text().split() for d in ("ddp", "single")]
    assert [float(v) for v in losses[0][3::2]] == pytest.approx([float(v) for v in losses[1][3::2]], rel=1e-4)
    trained = [load_exported(tmp_path / d / "model.pt")[0].state_dict() for d in ("ddp", "single")]
    for name, value in trained[1].items():
        torch.testing.assert_close(trained[0][name], value, rtol=1e-3, atol=1e-5, msg=name)
