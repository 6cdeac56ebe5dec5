"""Stand-ins and helpers for the ``medseg predict`` tests: real samples, model metadata as training records it,
and stand-in models whose masks are a known function of the input (geometry and prompt placement checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from helpers import REPO
from medseg.data.classes import ClassMap
from medseg.data.protocol import Protocol

SHARED = REPO.parent / "shared" / "data"
LESION = ClassMap(("background", "lesion"), (0, 1))
MIN_MAX = Protocol("RAS+", 2, 64, None, None, 2**27)


def shared(relative: str) -> Path:
    """A real sample under ../shared/data (the test is skipped when it is absent)."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real sample {path} is absent")
    return path


def metadata(mode: str, protocol: Protocol | None = MIN_MAX, **extra: Any) -> dict[str, Any]:
    """What training records: run identity, classes, data facts."""
    recorded = {"dataset": "sample", "mode": mode, "init": "sam", "profile": "full", "epoch": 0,
                "random_init": True, "synthetic_data": True, **LESION.to_metadata(mode), **extra}
    return recorded if protocol is None else {**recorded, "protocol": protocol.to_record()}


class Threshold(nn.Module):
    """Stand-in automated model: class 1 where the slice's 0-255 value exceeds 127 (any input size)."""

    mode, candidates, backbone, num_classes = "automated", False, "threshold", 2

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        gray = images[:, 0]
        return torch.stack([255 - gray, gray], dim=1)


class Painter(nn.Module):
    """Stand-in prompted model: the prompted box (or the pixel nearest the prompted point) is the object."""

    candidates, backbone, num_classes = False, "painter", 2

    def __init__(self, image_size: int, mode: str) -> None:
        super().__init__()
        self.image_size, self.mode = image_size, mode

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, :1]

    def decode(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        rows, cols = torch.meshgrid(torch.arange(self.image_size), torch.arange(self.image_size), indexing="ij")
        box = prompts.round() if self.mode == "box" else prompts.round().repeat(1, 2)
        x0, y0, x1, y1 = (box[:, i, None, None] for i in range(4))
        inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1)
        return torch.stack([~inside, inside], dim=1).float()


def stand_in(patch: pytest.MonkeyPatch, folder: Path, module: nn.Module, protocol: Protocol) -> Path:
    """Make predict load ``module`` (recording ``protocol``) for the model file it returns."""
    from medseg.infer import predict
    from medseg.infer.model import PredictModel

    path = folder / "stand_in.pt"
    path.write_bytes(b"stand-in")
    recorded = metadata(module.mode, protocol, strategy=module.backbone)
    loaded = PredictModel(module, path, recorded, (0, 1), {0: "background", 1: "lesion"})
    patch.setattr(predict, "load_model", lambda _: loaded)
    return path


def to_uint8_threshold(voxels: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """What ``Threshold`` predicts for voxels scaled as ingest scales them."""
    from medseg.data.slices import to_uint8

    return (to_uint8(voxels.astype(np.float32), window) > 127).astype(np.uint8)
