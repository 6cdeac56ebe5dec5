"""Fixtures of the data tests (loaded with ``pytest_plugins``): modifiable copies of the shared phantom,
a builder of hand-made MSD datasets, and a no-partial-output check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

CaseArrays = tuple[str, np.ndarray, np.ndarray]
MsdWriter = Callable[..., Path]


@pytest.fixture
def raw_copy(phantom_raw: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the phantom raw dataset."""
    return Path(shutil.copytree(phantom_raw, tmp_path / "raw"))


@pytest.fixture
def ingested_copy(ingested_sample: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the ingested phantom."""
    return Path(shutil.copytree(ingested_sample, tmp_path / "processed"))


def _write_msd(
    root: Path,
    cases: Sequence[CaseArrays],
    affine: np.ndarray | None = None,
    labels: dict[str, str] | None = None,
) -> Path:
    """Write ``cases`` (id, image, label) as an MSD-layout dataset (.nii.gz) under ``root``."""
    import nibabel as nib

    affine = np.eye(4) if affine is None else affine
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for case_id, image, label in cases:
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"{case_id}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{case_id}.nii.gz")
    listing = {
        "labels": labels or {"0": "background", "1": "lesion"},
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c, _, _ in cases
        ],
    }
    (root / "dataset.json").write_text(json.dumps(listing))
    return root


@pytest.fixture
def write_msd() -> MsdWriter:
    """A writer of small hand-made MSD datasets: ``write_msd(root, cases, affine=None, labels=None)``."""
    return _write_msd


def _assert_no_output(out: Path) -> None:
    """Neither ``out`` nor a leftover ``.<name>.tmp-*`` sibling exists."""
    assert not out.exists(), f"{out} was created"
    if out.parent.exists():
        leftovers = sorted(p.name for p in out.parent.glob(f".{out.name}.tmp-*"))
        assert leftovers == [], f"temporary directories left behind: {leftovers}"


@pytest.fixture
def assert_no_output() -> Callable[[Path], None]:
    """Check that a failed step left no output and no temporary directory behind."""
    return _assert_no_output
