"""The training engine on a tiny ingested phantom: recipe, early stopping, few-shot, exact resume."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import kill_after_first_commit, tiny_params
from medseg.errors import MedsegError
from medseg.models.checkpoints import load_exported
from medseg.models.segmenter import SamSegmenter
from medseg.train.config import TrainConfig, warmup_factor
from medseg.train.finetune import finetune
from medseg.train.state import EarlyStopping


def _config(**overrides: object) -> TrainConfig:
    return dataclasses.replace(TrainConfig.from_params(tiny_params()), **overrides)


@pytest.fixture(scope="module")
def trained_run(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, root / "out", _config(), root / "work")
    return root / "out"


def test_warmup_is_linear_then_flat() -> None:
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_recipe_values_come_from_params() -> None:
    params = tiny_params()
    params["finetune"].update(lr=3e-4, weight_decay=0.05, early_stopping_patience=7)
    config = TrainConfig.from_params(params)
    assert (config.lr, config.weight_decay, config.early_stopping_patience) == (3e-4, 0.05, 7)
    assert (config.profile, config.fewshot, config.init, config.run_folder) == ("full", False, "sam",
                                                                                "sam/full/automated")
    assert (config.max_epochs, config.batch_size) == (params["finetune"]["max_epochs"],
                                                      params["finetune"]["batch_size"])
    fewshot = TrainConfig.from_params(params, profile="fewshot", mode="box")
    settings = params["finetune"]["fewshot"]
    assert (fewshot.max_epochs, fewshot.batch_size, fewshot.early_stopping_patience) == (
        settings["max_epochs"], settings["batch_size"], settings["early_stopping_patience"])
    assert (fewshot.profile, fewshot.fewshot, fewshot.run_folder) == ("fewshot", True, "sam/fewshot/box")
    with pytest.raises(MedsegError, match=r"unknown profile '5shot'; known: \['full', 'fewshot'\]"):
        TrainConfig.from_params(params, profile="5shot")


def test_early_stopping_waits_for_patience_epochs() -> None:
    stopping = EarlyStopping(patience=2)
    improved = [stopping.update(epoch, score) for epoch, score in enumerate([0.1, 0.3, 0.2, 0.3, 0.25])]
    assert improved == [True, True, False, False, False] and stopping.best_epoch == 1 and stopping.should_stop
    never = EarlyStopping(patience=0)
    for epoch in range(50):
        never.update(epoch, 0.0)
    assert not never.should_stop


def test_run_writes_checkpoint_summary_and_curves(trained_run: Path) -> None:
    summary = json.loads((trained_run / "train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["random_init"] is True and summary["embedding_cache"] is True
    assert summary["params_trainable"] == 3_918_019
    loss_rows = (trained_run / "training/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_rows[0].split("\t") == ["step", "loss"] and len(loss_rows) == 3
    model, metadata = load_exported(trained_run / "model.pt")
    assert metadata["strategy"] == "vit_t_dec_vanilla" and metadata["epoch"] == summary["best_epoch"]
    assert (metadata["init"], metadata["profile"], summary["init"], summary["profile"]) == ("sam", "full", "sam",
                                                                                          "full")
    assert model.image_size == 64


def test_exported_model_records_its_ingestion_protocol(trained_run: Path, ingested_sample: Path) -> None:
    """What predict replays on new scans: the protocol of the slices the model trained on, and their origin."""
    _, metadata = load_exported(trained_run / "model.pt")
    ingest = json.loads((ingested_sample / "ingest.json").read_text())
    assert metadata["protocol"] == ingest["protocol"] and metadata["protocol"]["intensity_window"] == [-160, 240]
    assert metadata["synthetic_data"] is True


def test_decoder_only_run_leaves_the_encoder_untouched(trained_run: Path) -> None:
    model, _ = load_exported(trained_run / "model.pt")
    torch.manual_seed(tiny_params()["seed"])
    fresh = SamSegmenter("vit_t", 64, 2)
    for (name, trained), (_, initial) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        if name.startswith(("image_encoder.", "prompt_encoder.")):
            assert torch.equal(trained, initial), name
    assert any(not torch.equal(a, b) for a, b in zip(model.mask_decoder.parameters(),
                                                      fresh.mask_decoder.parameters(), strict=True))


def test_cached_and_uncached_decoder_training_agree(ingested_sample: Path, tmp_path: Path) -> None:
    """Without augmentation the embedding cache changes speed, not results."""
    config = _config(augment=dataclasses.replace(_config().augment, enabled=False))
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "cached", config, tmp_path / "w1")
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "plain",
             dataclasses.replace(config, embedding_cache=False), tmp_path / "w2")
    cached, plain = (json.loads((tmp_path / d / "train_summary.json").read_text()) for d in ("cached", "plain"))
    assert cached["best_val_dice"] == pytest.approx(plain["best_val_dice"], abs=1e-4)
    torch.manual_seed(tiny_params()["seed"])
    fresh = SamSegmenter("vit_t", 64, 2).image_encoder.state_dict()
    trained, _ = load_exported(tmp_path / "plain/model.pt")
    for name, value in trained.image_encoder.state_dict().items():  # buffers too: BatchNorm statistics
        assert torch.equal(value, fresh[name]), name


def test_fewshot_profile_trains_on_the_fewshot_slices(ingested_sample: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TrainConfig.from_params(tiny_params(), profile="fewshot"), batch_size=2,
                                 max_epochs=1)
    summary = finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "out", config, tmp_path / "w")
    _, metadata = load_exported(tmp_path / "out/model.pt")
    assert metadata["fewshot"] is True and metadata["profile"] == "fewshot" and summary["epochs_run"] == 1
    assert (summary["init"], summary["profile"], summary["mode"]) == ("sam", "fewshot", "automated")


def test_unknown_strategy_fails_before_writing(ingested_sample: Path, tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match="vit_t_dec_magic"):
        finetune("sample", "vit_t_dec_magic", ingested_sample, tmp_path / "out", _config(), tmp_path / "w")
    assert not (tmp_path / "out").exists()


def test_missing_data_is_named_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match=r"absent.*missing ingested file"):
        finetune("sample", "vit_t_dec_vanilla", tmp_path / "absent", tmp_path / "out", _config(), tmp_path / "w")
    assert not (tmp_path / "out").exists()


RUNS = {"finetune": ["--strategy", "vit_t_endec_vanilla"], "baseline": ["--network", "unet"]}
WORK = {"finetune": "sam/full/automated/vit_t_endec_vanilla", "baseline": "scratch/full/automated/unet"}


def _finetune_cmd(data: Path, out: Path, params: Path, resume: bool = False, step: str = "finetune") -> list[str]:
    medseg = str(Path(sys.executable).parent / "medseg")
    return [medseg, step, "--dataset", "sample", *RUNS[step], "--data", str(data),
            "--out", str(out), "--params", str(params), *(["--resume"] if resume else [])]


@pytest.mark.parametrize("step", list(RUNS))
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(ingested_sample: Path, tmp_path: Path, step: str) -> None:
    """Kill the run mid-way (SIGKILL, after at least one saved epoch), resume it, and compare: a SAM strategy
    and a baseline network (the same engine)."""
    params = tiny_params()
    params["finetune"].update(max_epochs=4, work_dir=str(tmp_path / "work"), num_threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    state = tmp_path / f"work/sample/{WORK[step]}/state.pt"  # <dataset>/<init>/<profile>/<mode>/<strategy>
    kill_after_first_commit(_finetune_cmd(ingested_sample, tmp_path / "resumed", tmp_path / "params.yaml",
                                             step=step), state)
    assert not (tmp_path / "resumed").exists()
    subprocess.run(_finetune_cmd(ingested_sample, tmp_path / "resumed", tmp_path / "params.yaml", resume=True,
                                 step=step), check=True, capture_output=True)
    params["finetune"]["work_dir"] = str(tmp_path / "work2")
    (tmp_path / "params2.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(_finetune_cmd(ingested_sample, tmp_path / "straight", tmp_path / "params2.yaml", step=step),
                   check=True, capture_output=True)
    resumed, _ = load_exported(tmp_path / "resumed/model.pt")
    straight, _ = load_exported(tmp_path / "straight/model.pt")
    for (name, a), (_, b) in zip(resumed.state_dict().items(), straight.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    curves = [(tmp_path / d / "training/plots/metrics/val/dice.tsv").read_text() for d in ("resumed", "straight")]
    assert curves[0] == curves[1]
