"""Fixtures shared by the data tests (loaded with ``pytest_plugins``): tiny settings, a phantom written
once, raw-dataset builders. Not named conftest.py: other tests import ``conftest`` by module name."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
TINY_SAMPLE: dict[str, Any] = {"num_patients": 6, "shape": [32, 32, 8]}
TINY_INGEST: dict[str, Any] = {"image_size": 64}

CaseArrays = tuple[str, np.ndarray, np.ndarray]
MsdWriter = Callable[..., Path]


def _tiny_params() -> dict[str, Any]:
    """The repository params.yaml with the sample and ingest sizes shrunk."""
    params = copy.deepcopy(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    params["sample"].update(TINY_SAMPLE)
    params["ingest"].update(TINY_INGEST)
    return params


@pytest.fixture
def data_params() -> dict[str, Any]:
    """A fresh copy of the tiny params (safe to modify)."""
    return _tiny_params()


@pytest.fixture
def data_params_file(tmp_path: Path) -> Path:
    """The tiny params written as a YAML file for CLI runs."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(_tiny_params()))
    return path


@pytest.fixture(scope="session")
def phantom_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom in MSD layout, written once per session (treat as read-only)."""
    from medseg.data.sample import PhantomSpec, write_sample

    params = _tiny_params()
    out = tmp_path_factory.mktemp("phantom") / "raw"
    write_sample(out, PhantomSpec.from_params(params["sample"]), int(params["seed"]))
    return out


@pytest.fixture(scope="session")
def phantom_ingested(phantom_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom ingested with the tiny params, once per session (treat as read-only)."""
    from medseg.data.ingest import ingest_msd

    params = _tiny_params()
    out = tmp_path_factory.mktemp("ingested") / "processed"
    ingest_msd("sample", phantom_raw, out, params["ingest"], int(params["seed"]))
    return out


@pytest.fixture
def raw_copy(phantom_raw: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the phantom raw dataset."""
    return Path(shutil.copytree(phantom_raw, tmp_path / "raw"))


@pytest.fixture
def ingested_copy(phantom_ingested: Path, tmp_path: Path) -> Path:
    """A private, modifiable copy of the ingested phantom."""
    return Path(shutil.copytree(phantom_ingested, tmp_path / "processed"))


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
