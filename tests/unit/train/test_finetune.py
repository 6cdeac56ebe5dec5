"""The training loop on a tiny ingested phantom."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import tiny_params
from medseg.errors import MedsegError
from medseg.models.checkpoints import load_exported
from medseg.models.segmenter import SamSegmenter
from medseg.train.finetune import TrainConfig, finetune, warmup_factor


def _config(**overrides: object) -> TrainConfig:
    params = tiny_params()
    config = TrainConfig.from_params(params)
    return TrainConfig(**{**config.__dict__, **overrides})


@pytest.fixture(scope="module")
def trained_run(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "vit_t_dec_vanilla"
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, out, _config())
    return out


def test_warmup_is_linear_then_flat() -> None:
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_recipe_values_come_from_params() -> None:
    config = _config()
    finetune_params = tiny_params()["finetune"]
    assert (config.lr, config.weight_decay, config.batch_size) == (
        finetune_params["lr"], finetune_params["weight_decay"], finetune_params["batch_size"])


def test_run_writes_checkpoint_summary_and_curves(trained_run: Path) -> None:
    summary = json.loads((trained_run / "train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["random_init"] is True
    assert summary["params_trainable"] == 3_918_019
    loss_rows = (trained_run / "training/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_rows[0].split("\t") == ["step", "loss"] and len(loss_rows) == 3
    assert (trained_run / "training/plots/metrics/val/dice.tsv").is_file()
    model, metadata = load_exported(trained_run / "model.pt")
    assert metadata["strategy"] == "vit_t_dec_vanilla" and metadata["epoch"] == summary["best_epoch"]
    assert model.image_size == 64


def test_decoder_only_run_leaves_the_encoder_untouched(trained_run: Path) -> None:
    model, _ = load_exported(trained_run / "model.pt")
    torch.manual_seed(tiny_params()["seed"])
    fresh = SamSegmenter("vit_t", 64, 2)
    for (name, trained), (_, initial) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        if name.startswith(("image_encoder.", "prompt_encoder.")):
            assert torch.equal(trained, initial), name
    decoder_changed = any(
        not torch.equal(a, b) for a, b in zip(model.mask_decoder.parameters(), fresh.mask_decoder.parameters(),
                                              strict=True))
    assert decoder_changed


def test_unknown_strategy_fails_before_writing(ingested_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match="vit_t_dec_magic"):
        finetune("sample", "vit_t_dec_magic", ingested_sample, tmp_path / "out", _config())
    assert not (tmp_path / "out").exists()


def test_missing_data_is_named_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match=r"absent.*missing ingested file"):
        finetune("sample", "vit_t_dec_vanilla", tmp_path / "absent", tmp_path / "out", _config())
    assert not (tmp_path / "out").exists()
