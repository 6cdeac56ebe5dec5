"""Torch datasets over ingested slices (memory-mapped; no per-epoch decoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.errors import MedsegError

INGEST_FILES = ("images.npy", "masks.npy", "manifest.parquet", "ingest.json")


def check_ingested(data_dir: str | Path) -> Path:
    """The ingested directory, with a clear error when a file is missing."""
    data_dir = Path(data_dir)
    for name in INGEST_FILES:
        if not (data_dir / name).is_file():
            raise MedsegError("missing ingested file (run `medseg ingest` first)", data_dir / name)
    return data_dir


def read_manifest(data_dir: str | Path) -> Any:
    """The slice manifest as a pandas DataFrame."""
    import pandas as pd

    path = check_ingested(data_dir) / "manifest.parquet"
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise MedsegError(f"cannot read manifest ({exc.__class__.__name__})", path) from exc


def open_arrays(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped images and masks, checked for matching shapes."""
    data_dir = check_ingested(data_dir)
    arrays = []
    for name in ("images.npy", "masks.npy"):
        try:
            arrays.append(np.load(data_dir / name, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError) as exc:
            raise MedsegError(f"cannot read array ({exc})", data_dir / name) from exc
    images, masks = arrays
    if images.shape != masks.shape:
        raise MedsegError(f"masks shape {masks.shape} differs from images {images.shape}", data_dir)
    return images, masks


class SliceDataset(Dataset):
    """Slices of one split: ``(image float32 (3, S, S) in 0-255, mask int64 (S, S))``; with
    ``fewshot`` only the split's few-shot selection (the manifest's ``fewshot`` column)."""

    def __init__(self, data_dir: str | Path, split: str, fewshot: bool = False) -> None:
        manifest = read_manifest(data_dir)
        self.data_dir, self.split = Path(data_dir), split
        column = "fewshot" if fewshot else "split"
        self.rows = manifest.loc[manifest[column] == split, "row"].to_numpy()
        self.images, self.masks = open_arrays(data_dir)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[index])
        image = torch.from_numpy(np.array(self.images[row], dtype=np.float32))
        mask = torch.from_numpy(np.array(self.masks[row], dtype=np.int64))
        return image.unsqueeze(0).expand(3, -1, -1).contiguous(), mask
