"""Unlabeled volumes for pretraining only (e.g. MRNet ``.npy`` stacks): images, no masks.

Settings: ``images`` (glob), ``exclude``; ``.npy`` files are read without pickle and taken as
(slices, H, W); other formats go through the volume reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import Case, case_for, find_images
from medseg.data.registry import DatasetSpec, check_choice, check_globs, check_keys
from medseg.data.volumes import read_volume
from medseg.errors import MedsegError

REQUIRED_SETTINGS = ("images",)
OPTIONAL_SETTINGS = ("exclude", "one_case_per_patient")


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings with unknown or missing keys (registry parsing)."""
    check_keys(settings, REQUIRED_SETTINGS, OPTIONAL_SETTINGS, "settings")
    check_globs(settings, "images")
    check_choice(settings, "one_case_per_patient", (True, False))


def discover(raw_dir: Path, spec: DatasetSpec) -> list[Case]:
    return [case_for(image, raw_dir, spec.patient_id) for image in find_images(raw_dir, spec.settings, spec.layout)]


def _read_npy(path: Path, max_voxels: int) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MedsegError(f"cannot read array ({exc})", path) from exc
    if array.ndim != 3:
        raise MedsegError(f"expected a 3D array, got shape {array.shape}", path)
    if array.size > max_voxels:
        raise MedsegError(f"array of shape {array.shape} exceeds the limit of {max_voxels} voxels", path)
    data = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise MedsegError("array contains NaN or infinite values", path)
    return data


def load(case: Case, spec: DatasetSpec, max_voxels: int) -> tuple[np.ndarray, None]:
    if case.image.suffix == ".npy":
        return _read_npy(case.image, max_voxels), None
    return read_volume(case.image, max_voxels).array, None
