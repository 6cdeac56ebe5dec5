"""Torch datasets over ingested slices (memory-mapped; no per-epoch decoding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.errors import MedsegError

INGEST_FILES = ("images.npy", "masks.npy", "manifest.parquet", "ingest.json")
MANIFEST_COLUMNS = ("row", "dataset", "patient", "case", "image_file", "label_file", "slice_index", "split",
                    "fewshot", "height", "width", "intensity_mean", "intensity_std", "mask_fraction",
                    "labels_present")


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
        manifest = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise MedsegError(f"cannot read manifest ({exc.__class__.__name__})", path) from exc
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise MedsegError(f"manifest lacks the column(s) {missing}; re-run `medseg ingest`", path)
    return manifest


def read_ingest_summary(data_dir: str | Path) -> dict[str, Any]:
    """``ingest.json`` as a dict, with a one-line error when it is corrupt."""
    path = check_ingested(data_dir) / "ingest.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MedsegError(f"corrupt ingest summary ({exc.__class__.__name__}); re-run `medseg ingest`", path) from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("labels"), dict):
        raise MedsegError("corrupt ingest summary (no 'labels' map); re-run `medseg ingest`", path)
    return summary


def open_arrays(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped images and masks, checked for matching shapes."""
    data_dir = check_ingested(data_dir)
    arrays = []
    for name in ("images.npy", "masks.npy"):
        try:
            arrays.append(np.load(data_dir / name, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError, EOFError) as exc:
            raise MedsegError(f"cannot read array ({exc})", data_dir / name) from exc
        if arrays[-1].ndim != 3:
            raise MedsegError(f"expected slices (N, S, S), got shape {arrays[-1].shape}", data_dir / name)
    images, masks = arrays
    if images.shape != masks.shape:
        raise MedsegError(f"masks shape {masks.shape} differs from images {images.shape}", data_dir)
    return images, masks


class SliceDataset(Dataset):
    """Slices of one split: ``(image float32 (3, S, S) in 0-255, mask int64 (S, S))``; with
    ``fewshot`` only the split's few-shot selection (the manifest's ``fewshot`` column)."""

    def __init__(self, data_dir: str | Path, split: str, fewshot: bool = False,
                 label_lookup: np.ndarray | None = None) -> None:
        manifest = read_manifest(data_dir)
        self.data_dir, self.split = Path(data_dir), split
        column = "fewshot" if fewshot else "split"
        self.rows = manifest.loc[manifest[column] == split, "row"].to_numpy()
        self.images, self.masks = open_arrays(data_dir)
        if label_lookup is not None:  # the model's classes: stored labels it does not learn read as background
            from medseg.data.classes import MappedMasks

            self.masks = MappedMasks(self.masks, label_lookup)
        if len(manifest) != len(self.images) or (len(self.rows) and not 0 <= self.rows.min() <= self.rows.max()
                                                 < len(self.images)):
            raise MedsegError(f"manifest has {len(manifest)} rows but the arrays hold {len(self.images)} slices; "
                              "re-run `medseg ingest`", self.data_dir / "manifest.parquet")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[index])
        image = torch.from_numpy(np.array(self.images[row], dtype=np.float32))
        mask = torch.from_numpy(np.array(self.masks[row], dtype=np.int64))
        return image.unsqueeze(0).expand(3, -1, -1).contiguous(), mask
