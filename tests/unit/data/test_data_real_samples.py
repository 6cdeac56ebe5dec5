"""Real public samples in ../shared/data ingest as downloaded (skipped when the folder is absent)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers import tiny_params
from medseg.data.ingest import ingest_dataset

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
TEST_REGISTRY = Path(__file__).parent / "registry"


def _sample(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real sample {path} is absent")
    return path


def _params(**overrides: Any) -> dict[str, Any]:
    return {**tiny_params()["ingest"], "extra_registries": [str(TEST_REGISTRY)], "image_size": 64, **overrides}


def test_busi_merges_second_masks_and_drops_empty_normals(tmp_path: Path) -> None:
    raw = _sample("busi")
    summary = ingest_dataset("us_breast", raw, tmp_path / "out", _params(), seed=0)
    manifest = pd.read_parquet(tmp_path / "out/manifest.parquet")
    images = sorted(p for p in (raw / "Dataset_BUSI_with_GT").glob("*/*).png"))
    assert len(images) == 31
    assert summary["grouping"] == "image" and len(manifest) == 26  # 5 normal images have empty masks
    assert not manifest["case"].str.contains("normal").any()
    benign4 = manifest.loc[manifest["case"].str.endswith("benign (4)")].iloc[0]
    assert benign4["label_file"].split(";") == [
        "Dataset_BUSI_with_GT/benign/benign (4)_mask.png", "Dataset_BUSI_with_GT/benign/benign (4)_mask_1.png"]
    assert set(manifest["labels_present"]) == {"0,1"}


def test_busi_second_mask_adds_foreground(tmp_path: Path) -> None:
    """benign (4) with both masks has more foreground than with the first alone."""
    raw = tmp_path / "busi"
    shutil.copytree(_sample("busi"), raw)
    ingest_dataset("us_breast", raw, tmp_path / "both", _params(image_size=128), seed=0)
    (raw / "Dataset_BUSI_with_GT/benign/benign (4)_mask_1.png").unlink()
    ingest_dataset("us_breast", raw, tmp_path / "first", _params(image_size=128), seed=0)

    def foreground(out: Path) -> float:
        manifest = pd.read_parquet(out / "manifest.parquet")
        return float(manifest.loc[manifest["case"].str.endswith("benign (4)"), "mask_fraction"].iloc[0])

    assert foreground(tmp_path / "both") > foreground(tmp_path / "first")


def test_brats_multiclass_labels_and_slices(tmp_path: Path) -> None:
    raw = _sample("brats2015")
    summary = ingest_dataset("brats2015", raw, tmp_path / "out", _params(), seed=0)
    manifest = pd.read_parquet(tmp_path / "out/manifest.parquet")
    masks = np.load(tmp_path / "out/masks.npy")
    expected = 0
    for subject in sorted(raw.iterdir()):
        if subject.is_dir():
            label = np.asarray(nib.as_closest_canonical(nib.load(subject / "OTMultiClass.nii.gz")).dataobj)
            expected += int(label.reshape(-1, label.shape[2]).any(axis=0).sum())
    assert len(manifest) == expected
    assert set(np.unique(masks).tolist()) <= {0, 1, 2, 3, 4} and len(np.unique(masks)) >= 4
    assert summary["grouping"] == "patient"
    assert set(manifest["patient"]) == {"brats_2013_pat0005_1", "brats_2013_pat0006_1"}
    assert manifest.groupby("patient")["split"].nunique().max() == 1


def test_busi_normal_images_are_kept_as_negatives_when_asked(tmp_path: Path) -> None:
    ingest_dataset("us_breast", _sample("busi"), tmp_path / "out", _params(drop_empty_slices=False), seed=0)
    manifest = pd.read_parquet(tmp_path / "out/manifest.parquet")
    normals = manifest[manifest["case"].str.contains("__normal__")]
    assert len(manifest) == 31 and len(normals) == 5
    assert (normals["mask_fraction"] == 0).all()
