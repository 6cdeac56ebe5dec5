"""Fine-tuning integrity: epoch commits that survive a kill, locked work directories, resume
fingerprints that cover the data, checked checkpoints and training state, early settings checks."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import peft_config, tiny_params
from medseg.errors import MedsegError
from medseg.locking import exclusive_lock
from medseg.models.checkpoints import export_checkpoint, load_encoder_weights, load_exported, load_sam_weights
from medseg.models.factory import model_spec
from medseg.models.segmenter import SamSegmenter
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune

STRATEGY = "vit_t_dec_vanilla"
CURVES = ("train/loss", "val/dice", "lr")


class Killed(Exception):
    """Stands in for a kill at a chosen point of the run."""


def _config(**overrides: Any) -> TrainConfig:
    return dataclasses.replace(TrainConfig.from_params(tiny_params()), **overrides)


def _work(work_root: Path) -> Path:
    return work_root / "sample" / "sam" / "full" / "automated" / STRATEGY


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(error: pytest.ExceptionInfo[MedsegError], *expected: str) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    for text in expected:
        assert text in message, (text, message)
    return message


@pytest.fixture(scope="module")
def interrupted(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work root whose run was killed after epoch 1's other writes, before its state was saved
    (treat as read-only: copy it)."""
    import medseg.train.finetune as module

    root = tmp_path_factory.mktemp("interrupted")
    real = module.save_state

    def save_state(path: Path, epoch: int, *args: Any, **kwargs: Any) -> None:
        if epoch == 1:
            raise Killed("killed before the state of epoch 1 was saved")
        real(path, epoch, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "save_state", save_state)
        with pytest.raises(Killed):
            finetune("sample", STRATEGY, ingested_sample, root / "out", _config(), root / "work")
    assert not (root / "out").exists()
    return root / "work"


def _copy(work_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(work_root, tmp_path / "work")
    return tmp_path / "work"


def test_kill_between_epoch_writes_resumes_exactly(ingested_sample: Path, interrupted: Path, tmp_path: Path) -> None:
    """Case 5: the resumed run has the curves, epoch count and weights of an uninterrupted run."""
    work_root = _copy(interrupted, tmp_path)
    resumed = finetune("sample", STRATEGY, ingested_sample, tmp_path / "resumed", _config(), work_root, resume=True)
    straight = finetune("sample", STRATEGY, ingested_sample, tmp_path / "straight", _config(), tmp_path / "work2")
    assert resumed["epochs_run"] == straight["epochs_run"] == 2
    assert resumed["best_epoch"] == straight["best_epoch"]
    for curve in CURVES:
        tsv = [(tmp_path / d / "training/plots/metrics" / f"{curve}.tsv").read_text() for d in ("resumed", "straight")]
        assert tsv[0] == tsv[1] and len(tsv[0].splitlines()) == 3, curve
    models = [load_exported(tmp_path / d / "model.pt") for d in ("resumed", "straight")]
    assert models[0][1]["epoch"] == models[1][1]["epoch"] == straight["best_epoch"]
    for (name, a), (_, b) in zip(models[0][0].state_dict().items(), models[1][0].state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not _work(work_root).exists()


def test_concurrent_runs_on_one_work_dir_are_refused(ingested_sample: Path, tmp_path: Path) -> None:
    """Case 6: while another run holds the work directory, a second run fails at once, touching nothing."""
    work = _work(tmp_path / "work")
    work.mkdir(parents=True)
    (work / "state.pt").write_bytes(b"the other run's state")
    before = _snapshot(work)
    with exclusive_lock(work, "this training work directory"), pytest.raises(MedsegError) as error:
        finetune("sample", STRATEGY, ingested_sample, tmp_path / "out", _config(), tmp_path / "work")
    _one_line(error, str(work), "in use by another medseg run")
    assert _snapshot(work) == before
    assert not (tmp_path / "out").exists()


def _reingest_fewer_slices(source: Path, target: Path) -> None:
    """``source`` re-ingested with a third of its slices dropped (rows renumbered, arrays rewritten)."""
    shutil.copytree(source, target)
    manifest = pd.read_parquet(target / "manifest.parquet")
    keep = [row for i, row in enumerate(manifest["row"]) if i % 3 or manifest["split"].iloc[i] != "train"]
    for name in ("images.npy", "masks.npy"):
        np.save(target / name, np.load(source / name)[keep])
    manifest = manifest.iloc[keep].reset_index(drop=True)
    manifest["row"] = np.arange(len(manifest))
    manifest.to_parquet(target / "manifest.parquet", index=False)


def test_resume_after_the_data_changed_is_refused(ingested_sample: Path, interrupted: Path, tmp_path: Path) -> None:
    """Case 7: the resume fingerprint covers the data (and the checkpoint files' contents)."""
    work_root = _copy(interrupted, tmp_path)
    _reingest_fewer_slices(ingested_sample, tmp_path / "data")
    before = _snapshot(_work(work_root))
    with pytest.raises(MedsegError) as error:
        finetune("sample", STRATEGY, tmp_path / "data", tmp_path / "out", _config(), work_root, resume=True)
    _one_line(error, "state.pt", "training data", "--resume")
    assert _snapshot(_work(work_root)) == before and not (tmp_path / "out").exists()
    weights = tmp_path / "sam.pt"
    weights.write_bytes(b"weights, first version")
    config = _config(checkpoint=str(weights))
    first = config.fingerprint("sample", STRATEGY, ingested_sample)
    assert config.fingerprint("sample", STRATEGY, tmp_path / "data")["data"] != first["data"]
    weights.write_bytes(b"weights, other version")  # same path, other content
    assert config.fingerprint("sample", STRATEGY, ingested_sample)["weights"] != first["weights"]


def _exported_payload(tmp_path: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    export_checkpoint(SamSegmenter("vit_t", 64, 2), tmp_path / "good.pt", model_spec(STRATEGY, peft_config()), {})
    return torch.load(tmp_path / "good.pt", weights_only=True)


VIT_B_SPEC = model_spec("vit_b_dec_vanilla", peft_config())
BAD_FIELDS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "vit_b claiming 65536 px": (lambda p: p.update(backbone="vit_b", spec=VIT_B_SPEC, image_size=65536), "image_size"),
    "size not a multiple of 16": (lambda p: p.update(image_size=72), "image_size"),
    "size as text": (lambda p: p.update(image_size="64"), "image_size"),
    "too many classes": (lambda p: p.update(num_classes=100_000), "num_classes"),
    "one class": (lambda p: p.update(num_classes=1), "num_classes"),
    "unknown mode": (lambda p: p.update(mode="magic"), "mode"),
    "candidates as text": (lambda p: p.update(candidates="yes"), "candidates"),
    "no spec": (lambda p: p.pop("spec"), "spec"),
    "unknown strategy": (lambda p: p.update(spec={**p["spec"], "strategy": "vit_q_dec_vanilla"}), "vit_q"),
    "bad PEFT key": (lambda p: p["spec"]["peft"].update(lora_rnak=4), "lora_rnak"),
    "bad PEFT value": (lambda p: p["spec"]["peft"].update(lora_rank=10**9), "lora_rank"),
    "backbone not the spec's": (lambda p: p.update(backbone="vit_h"), "backbone"),
    "metadata a list": (lambda p: p.update(metadata=[1, 2]), "metadata"),
    "no weights": (lambda p: p.pop("state_dict"), "state_dict"),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_exported_checkpoint_fields_are_checked_before_building(case: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Case 8: every field is validated before any model is built; errors name the file and field."""
    def must_not_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was built from an unchecked checkpoint")

    payload = _exported_payload(tmp_path)
    edit, field = BAD_FIELDS[case]
    edit(payload)
    torch.save(payload, tmp_path / "model.pt")
    monkeypatch.setattr("medseg.models.factory.model_from_spec", must_not_build)
    with pytest.raises(MedsegError) as error:
        load_exported(tmp_path / "model.pt")
    _one_line(error, "model.pt", field)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    """Case 9: NaN or infinite weights are refused by every loader, naming the file and the first bad key."""
    payload = _exported_payload(tmp_path)
    state = payload["state_dict"]
    first, second = [key for key, value in state.items() if value.is_floating_point()][3:5]
    state[first].view(-1)[0], state[second].view(-1)[0] = float("nan"), float("inf")
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(MedsegError) as error:
        load_exported(tmp_path / "model.pt")
    _one_line(error, "model.pt", first)
    torch.save(state, tmp_path / "sam.pth")
    with pytest.raises(MedsegError) as error:
        load_sam_weights(SamSegmenter("vit_t", 64, 2), tmp_path / "sam.pth")
    _one_line(error, "sam.pth", first)
    encoder = SamSegmenter("vit_t", 64, 2).image_encoder.state_dict()
    bad = next(key for key, value in encoder.items() if value.is_floating_point())
    encoder[bad].view(-1)[-1] = -float("inf")
    torch.save(encoder, tmp_path / "encoder.pth")
    with pytest.raises(MedsegError) as error:
        load_encoder_weights(SamSegmenter("vit_t", 64, 2), tmp_path / "encoder.pth")
    _one_line(error, "encoder.pth", bad)


def _edit_state(work: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    payload = torch.load(work / "state.pt", weights_only=True)
    edit(payload)
    torch.save(payload, work / "state.pt")


def _drop_fingerprint(work: Path) -> None:
    (work / "fingerprint").unlink(missing_ok=True)  # where it lived before it moved into the state
    _edit_state(work, lambda payload: payload.pop("fingerprint", None))


CORRUPTIONS: dict[str, Callable[[Path], object]] = {
    "truncated": lambda work: (work / "state.pt").write_bytes((work / "state.pt").read_bytes()[:5000]),
    "not a torch file": lambda work: (work / "state.pt").write_text("garbage"),
    "foreign object": lambda work: torch.save(["not", "a", "state"], work / "state.pt"),
    "no fingerprint": _drop_fingerprint,
    "foreign generator state": lambda work: _edit_state(
        work, lambda payload: payload["rng"].update(torch=torch.zeros(3, dtype=torch.uint8))),
    "foreign early stopping": lambda work: _edit_state(work, lambda payload: payload.update(stopping={"x": 1})),
}


def test_corrupt_training_state_is_one_line_naming_the_file(ingested_sample: Path, interrupted: Path,
                                                            tmp_path: Path) -> None:
    """Case 10: every kind of damaged state gives one MedsegError line naming the state file."""
    for name, corrupt in CORRUPTIONS.items():
        work_root = _copy(interrupted, tmp_path / name)
        corrupt(_work(work_root))
        with pytest.raises(MedsegError) as error:
            finetune("sample", STRATEGY, ingested_sample, tmp_path / name / "out", _config(), work_root, resume=True)
        _one_line(error, str(_work(work_root) / "state.pt"))
        assert not (tmp_path / name / "out").exists(), name


def test_zero_batch_size_or_epochs_are_refused_at_once(params_dict: dict[str, Any]) -> None:
    """Case 11: TrainConfig refuses them when built, naming the params key."""
    for key, value in (("batch_size", 0), ("max_epochs", 0), ("max_epochs", -1), ("batch_size", -3)):
        params = copy.deepcopy(params_dict)
        params["finetune"][key] = value
        with pytest.raises(MedsegError, match=rf"^finetune\.{key}: must be >= 1, got {value}$"):
            TrainConfig.from_params(params)
        params["finetune"]["fewshot"][key] = value
        with pytest.raises(MedsegError, match=rf"^finetune\.fewshot\.{key}: must be >= 1, got {value}$"):
            TrainConfig.from_params(params, profile="fewshot")
    with pytest.raises(MedsegError, match=r"^finetune\.batch_size: must be >= 1, got 0$"):
        _config(batch_size=0)


def test_labels_beyond_num_classes_are_refused_before_training(ingested_sample: Path, tmp_path: Path) -> None:
    """Case 12: a mask label outside the dataset's label map (so beyond the model's classes) fails before
    anything is trained or written."""
    data = tmp_path / "data"
    shutil.copytree(ingested_sample, data)
    manifest = pd.read_parquet(data / "manifest.parquet")
    masks = np.load(data / "masks.npy")
    row = int(manifest.loc[manifest["split"] == "train", "row"].iloc[0])
    masks[row][masks[row] > 0] = 2
    np.save(data / "masks.npy", masks)
    manifest.loc[manifest["row"] == row, "labels_present"] = ",".join(str(v) for v in np.unique(masks[row]))
    manifest.to_parquet(data / "manifest.parquet", index=False)
    with pytest.raises(MedsegError) as error:
        finetune("sample", STRATEGY, data, tmp_path / "out", _config(), tmp_path / "work")
    _one_line(error, str(data), "[0, 1, 2]", "label map (ingest.json) has [0, 1]")
    assert not (tmp_path / "out").exists() and not _work(tmp_path / "work").exists()
