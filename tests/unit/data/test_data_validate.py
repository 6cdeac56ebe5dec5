"""The blocking quality checks of an ingested dataset, each failing on its own planted defect."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medseg.errors import MedsegError
from medseg.quality.validate import run_checks, validate

pytest_plugins = ["data_fixtures"]

CHECK_NAMES = {
    "manifest_schema", "image_size_and_dtype", "mask_labels_in_label_map", "no_empty_masks",
    "no_patient_in_two_splits", "min_slices_per_split",
}
SETTINGS: dict[str, Any] = {"image_size": 64, "drop_empty_slices": True, "min_slices_per_split": 1}
Defect = Callable[[Path], dict[str, Any]]


def _failed(data_dir: Path, settings: dict[str, Any]) -> set[str]:
    return {r.name for r in run_checks(data_dir, settings) if not r.passed}


def _edit_manifest(data_dir: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = data_dir / "manifest.parquet"
    edit(pd.read_parquet(path)).to_parquet(path, index=False)


def _edit_masks(data_dir: Path, edit: Callable[[np.ndarray], None]) -> None:
    masks = np.load(data_dir / "masks.npy")
    edit(masks)
    np.save(data_dir / "masks.npy", masks)


def patient_in_two_splits(data_dir: Path) -> dict[str, Any]:
    def move_one_slice(manifest: pd.DataFrame) -> pd.DataFrame:
        train = manifest.index[manifest["split"] == "train"]
        manifest.loc[train[0], "split"] = "test"
        return manifest

    _edit_manifest(data_dir, move_one_slice)
    return SETTINGS


def wrong_image_size(_: Path) -> dict[str, Any]:
    return {**SETTINGS, "image_size": 32}


def mask_value_outside_label_map(data_dir: Path) -> dict[str, Any]:
    def plant(masks: np.ndarray) -> None:
        masks[0][masks[0] > 0] = 7

    _edit_masks(data_dir, plant)
    return SETTINGS


def empty_mask_kept(data_dir: Path) -> dict[str, Any]:
    def plant(masks: np.ndarray) -> None:
        masks[1] = 0

    _edit_masks(data_dir, plant)
    return SETTINGS


def too_few_slices(_: Path) -> dict[str, Any]:
    return {**SETTINGS, "min_slices_per_split": 10_000}


def manifest_rows_mismatch(data_dir: Path) -> dict[str, Any]:
    _edit_manifest(data_dir, lambda manifest: manifest.iloc[:-1])
    return SETTINGS


DEFECTS: list[tuple[Defect, str]] = [
    (patient_in_two_splits, "no_patient_in_two_splits"),
    (wrong_image_size, "image_size_and_dtype"),
    (mask_value_outside_label_map, "mask_labels_in_label_map"),
    (empty_mask_kept, "no_empty_masks"),
    (too_few_slices, "min_slices_per_split"),
    (manifest_rows_mismatch, "manifest_schema"),
]


def test_clean_dataset_passes_every_check(ingested_sample: Path, tmp_path: Path) -> None:
    passed, results = validate("sample", ingested_sample, tmp_path / "validate.json", SETTINGS)
    assert passed
    assert {r.name for r in results} == CHECK_NAMES
    assert all(r.passed for r in results)
    written = json.loads((tmp_path / "validate.json").read_text())
    assert written["passed"] is True and written["num_failed"] == 0
    assert written["checks"] == dict.fromkeys(CHECK_NAMES, True)


@pytest.mark.parametrize(("plant", "check"), DEFECTS, ids=[check for _, check in DEFECTS])
def test_planted_defect_fails_its_check(
    plant: Defect, check: str, ingested_copy: Path, tmp_path: Path
) -> None:
    settings = plant(ingested_copy)
    assert _failed(ingested_copy, settings) == {check}
    passed, _ = validate("sample", ingested_copy, tmp_path / "validate.json", settings)
    written = json.loads((tmp_path / "validate.json").read_text())
    assert not passed and written["passed"] is False and written["num_failed"] == 1
    assert written["checks"] == {name: name != check for name in CHECK_NAMES}


def test_empty_masks_allowed_when_not_dropping(ingested_copy: Path) -> None:
    empty_mask_kept(ingested_copy)
    assert _failed(ingested_copy, {**SETTINGS, "drop_empty_slices": False}) == set()


def test_missing_ingested_file_is_named(ingested_copy: Path, tmp_path: Path) -> None:
    (ingested_copy / "masks.npy").unlink()
    with pytest.raises(MedsegError) as caught:
        run_checks(ingested_copy, SETTINGS)
    assert caught.value.path == str(ingested_copy / "masks.npy")
