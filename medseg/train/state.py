"""Training state that survives a kill: saved atomically every epoch, restored exactly.

The state holds the model's weights, the optimiser and scheduler, early stopping, the logging step,
and every random number generator that the next epoch consumes (torch, numpy, Python, the data
order generator and the augmentation generator), so that a resumed run repeats the interrupted
epoch bit for bit on the CPU with deterministic algorithms."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.atomic import atomic_file
from medseg.errors import MedsegError

STATE_FILE = "state.pt"


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
               stopping: EarlyStopping, generators: Generators) -> None:
    """Write the state after ``epoch`` atomically (a kill mid-write leaves the previous one)."""
    payload = {
        "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "stopping": vars(stopping).copy(), "rng": _rng_state(generators),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any,
               generators: Generators) -> tuple[int, EarlyStopping]:
    """Restore a saved state into the given objects; returns (last finished epoch, early stopping)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
    except Exception as exc:  # truncated file, foreign format, other architecture
        raise MedsegError(f"cannot resume from this training state ({exc.__class__.__name__}: {exc})", path) from exc
    _restore_rng(payload["rng"], generators)
    return int(payload["epoch"]), EarlyStopping(**payload["stopping"])
