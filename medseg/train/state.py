"""Training state that survives a kill: one file per run, committed atomically after every epoch.

The state (``state.pt``, format ``medseg.train-state/2``) holds the model's weights, the optimiser and
scheduler, early stopping, the curves so far (one history entry per epoch), the resume fingerprint,
the name of the best epoch's checkpoint, and every random number generator that the next epoch
consumes (torch, numpy, Python, the data order generator and the augmentation generator), so that a
resumed run repeats the interrupted epoch bit for bit on the CPU with deterministic algorithms.

An epoch writes its best checkpoint (if it improved) to its own ``best-epochNNNN.pt`` first and the
state last, so a kill at any point leaves the previous commit intact; a resume removes whatever the
unfinished epoch left (``tidy``)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.atomic import atomic_file
from medseg.errors import MedsegError
from medseg.models.checkpoints import first_line
from medseg.train.fingerprint import PARTS

STATE_FILE = "state.pt"
STATE_FORMAT = "medseg.train-state/2"
BEST_GLOB = "best-epoch*.pt"
LOGGED = ("train/loss", "val/dice", "lr")  # one history entry per epoch
STATE_FIELDS = {"epoch": int, "history": list, "fingerprint": dict, "best": str, "model": dict, "optimizer": dict,
                "scheduler": dict, "stopping": dict, "rng": dict}


def best_file(epoch: int) -> str:
    """The work directory's checkpoint of a best epoch."""
    return f"best-epoch{epoch:04d}.pt"


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs without a better validation score (0 disables stopping)."""

    patience: int
    best_score: float = -float("inf")
    best_epoch: int = -1
    epochs_without_improvement: int = 0

    def update(self, epoch: int, score: float) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if score > self.best_score or self.best_epoch < 0:
            self.best_score, self.best_epoch, self.epochs_without_improvement = score, epoch, 0
            return True
        self.epochs_without_improvement += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.epochs_without_improvement >= self.patience


@dataclass
class Generators:
    """The run's own random generators (data order and augmentation)."""

    data: torch.Generator
    augment: torch.Generator
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def seeded(cls, seed: int) -> Generators:
        return cls(torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1))


def _rng_state(generators: Generators) -> dict[str, Any]:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_version": random.getstate()[0],
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
        "data": generators.data.get_state(), "augment": generators.augment.get_state(),
    }


def _restore_rng(state: dict[str, Any], generators: Generators) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), None))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    generators.data.set_state(state["data"])
    generators.augment.set_state(state["augment"])


def save_state(path: Path, epoch: int, model: torch.nn.Module, optimizer: Any, scheduler: Any,
               stopping: EarlyStopping, generators: Generators, history: list[dict[str, float]],
               fingerprint: dict[str, str]) -> None:
    """Commit ``epoch``: one file written atomically (a kill mid-write leaves the previous epoch's)."""
    payload = {
        "format": STATE_FORMAT, "epoch": epoch, "history": [dict(entry) for entry in history],
        "fingerprint": dict(fingerprint), "best": best_file(stopping.best_epoch), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "stopping": vars(stopping).copy(),
        "rng": _rng_state(generators),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def _is_stopping(values: dict[str, Any]) -> bool:
    counts = ("patience", "best_epoch", "epochs_without_improvement")
    return (set(values) == set(EarlyStopping.__dataclass_fields__) and isinstance(values["best_score"], float)
            and all(isinstance(values[name], int) for name in counts))


def _problem(payload: Any, logged: tuple[str, ...] = LOGGED) -> str | None:
    """What makes ``payload`` unusable as a training state (history entries holding ``logged``), or None."""
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        return f"not a {STATE_FORMAT} file"
    for key, kind in STATE_FIELDS.items():
        if not isinstance(payload.get(key), kind) or isinstance(payload.get(key), bool):
            return f"field '{key}' is missing or not a {kind.__name__}"
    history, stopping = payload["history"], payload["stopping"]
    if payload["epoch"] < 0 or len(history) != payload["epoch"] + 1:
        return f"{len(history)} history entries for epoch {payload['epoch']}"
    if not all(isinstance(entry, dict) and all(isinstance(entry.get(name), float) for name in logged)
               for entry in history):
        return f"history entries must hold {list(logged)}"
    if not _is_stopping(stopping):
        return "field 'stopping' is not an early stopping state"
    if payload["best"] != best_file(stopping["best_epoch"]):
        return f"field 'best' does not name the best epoch's checkpoint ({payload['best']!r:.60})"
    if not all(isinstance(payload["fingerprint"].get(part), str) for part in PARTS):
        return f"field 'fingerprint' lacks one of {list(PARTS)}"
    return None


def read_state(path: Path, logged: tuple[str, ...] = LOGGED) -> dict[str, Any]:
    """The committed state of ``path``, checked for completeness (not yet restored anywhere); each history
    entry must hold the curves ``logged`` (a fine-tuning run's by default)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, pickled code, not a torch file
        raise MedsegError(f"cannot read the training state: corrupt, truncated or foreign file ({first_line(exc)}); "
                          "rerun without --resume", path) from exc
    problem = _problem(payload, logged)
    if problem:
        raise MedsegError(f"not a usable training state ({problem}); rerun without --resume", path)
    return payload


def restore_state(path: Path, payload: dict[str, Any], model: torch.nn.Module, optimizer: Any, scheduler: Any,
                  generators: Generators) -> tuple[int, EarlyStopping, list[dict[str, float]]]:
    """Restore a state from ``read_state`` into the given objects; returns (last committed epoch, early
    stopping, history)."""
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        _restore_rng(payload["rng"], generators)
        stopping = EarlyStopping(**payload["stopping"])
    except Exception as exc:  # other architecture, foreign optimiser or generator states
        raise MedsegError(f"cannot resume from this training state ({exc.__class__.__name__}: {first_line(exc)}); "
                          "rerun without --resume", path) from exc
    return payload["epoch"], stopping, [dict(entry) for entry in payload["history"]]


def tidy(work: Path, best: str) -> None:
    """Remove what an interrupted epoch may have left: best-epoch checkpoints other than ``best`` and
    temporary files of unfinished atomic writes."""
    for stale in [*work.glob(BEST_GLOB), *work.glob(".*.tmp-*")]:
        if stale.name != best and stale.is_file():
            stale.unlink(missing_ok=True)
