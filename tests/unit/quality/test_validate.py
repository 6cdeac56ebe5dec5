"""The data gate: a clean dataset passes; each planted defect fails the check that names it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from helpers import tiny_params
from medseg.errors import MedsegError
from medseg.params_schema import VALIDATION_CHECKS
from medseg.quality.validate import validate

Defect = Callable[[Path, Path, dict[str, Any]], None]


def _settings() -> dict[str, Any]:
    params = tiny_params()
    return {**params["validate"], "image_size": params["ingest"]["image_size"],
            "drop_empty_slices": params["ingest"]["drop_empty_slices"],
            "split_fractions": params["ingest"]["split_fractions"]}


@pytest.fixture
def copies(phantom_raw: Path, ingested_sample: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Private copies of the raw and ingested phantom, safe to break."""
    return (Path(shutil.copytree(phantom_raw, tmp_path / "raw")),
            Path(shutil.copytree(ingested_sample, tmp_path / "processed")))


def _edit_manifest(data: Path, edit: Callable[[pd.DataFrame], None]) -> None:
    manifest = pd.read_parquet(data / "manifest.parquet")
    edit(manifest)
    manifest.to_parquet(data / "manifest.parquet", index=False)


def _edit_array(data: Path, name: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(data / name, edit(np.load(data / name)))


def leaked_patient(_: Path, data: Path, __: dict[str, Any]) -> None:
    def move(m: pd.DataFrame) -> None:
        m.loc[m.index[m["split"] == "train"][0], "split"] = "test"
    _edit_manifest(data, move)


def wrong_size(_: Path, __: Path, settings: dict[str, Any]) -> None:
    settings["image_size"] = 32


def non_binary_mask(_: Path, data: Path, __: dict[str, Any]) -> None:
    def plant(masks: np.ndarray) -> np.ndarray:
        masks[0][masks[0] > 0] = 7
        return masks
    _edit_array(data, "masks.npy", plant)


def empty_mask_kept(_: Path, data: Path, __: dict[str, Any]) -> None:
    def clear(masks: np.ndarray) -> np.ndarray:
        masks[3] = 0
        return masks
    _edit_array(data, "masks.npy", clear)


def out_of_range_value(_: Path, data: Path, __: dict[str, Any]) -> None:
    def overflow(images: np.ndarray) -> np.ndarray:
        wide = images.astype(np.float32)
        wide[0, 0, 0] = 300.0
        return wide
    _edit_array(data, "images.npy", overflow)


def missing_source_file(raw: Path, _: Path, __: dict[str, Any]) -> None:
    next((raw / "imagesTr").glob("*.nii.gz")).unlink()


def duplicate_across_splits(_: Path, data: Path, __: dict[str, Any]) -> None:
    manifest = pd.read_parquet(data / "manifest.parquet")
    train, test = (int(manifest.loc[manifest["split"] == s, "row"].iloc[0]) for s in ("train", "test"))

    def copy(images: np.ndarray) -> np.ndarray:
        images[test] = images[train]
        return images
    _edit_array(data, "images.npy", copy)


def too_few_slices(_: Path, __: Path, settings: dict[str, Any]) -> None:
    settings["min_slices_per_split"] = 10_000


def wrong_dtype(_: Path, data: Path, __: dict[str, Any]) -> None:
    _edit_array(data, "images.npy", lambda images: images.astype(np.int16))


def unbalanced_split(_: Path, data: Path, __: dict[str, Any]) -> None:
    def to_train(m: pd.DataFrame) -> None:
        m.loc[m["split"] == "test", "split"] = "train"
    _edit_manifest(data, to_train)


def extra_manifest_column(_: Path, data: Path, __: dict[str, Any]) -> None:
    _edit_manifest(data, lambda m: m.insert(1, "scanner", "unknown"))


def arrays_shorter_than_manifest(_: Path, data: Path, __: dict[str, Any]) -> None:
    for name in ("images.npy", "masks.npy"):
        np.save(data / name, np.load(data / name)[:-3])


DEFECTS: dict[str, tuple[Defect, str]] = {
    "leaked patient": (leaked_patient, "no_patient_in_two_splits"),
    "wrong size": (wrong_size, "image_size"),
    "non-binary mask": (non_binary_mask, "mask_labels"),
    "empty mask kept": (empty_mask_kept, "no_empty_masks"),
    "out-of-range value": (out_of_range_value, "value_range"),
    "missing file": (missing_source_file, "source_files_exist"),
    "duplicate image across splits": (duplicate_across_splits, "no_duplicate_images_across_splits"),
    "too few slices": (too_few_slices, "min_slices_per_split"),
    "wrong dtype": (wrong_dtype, "image_dtype"),
    "unbalanced split": (unbalanced_split, "split_fractions"),
    "extra manifest column": (extra_manifest_column, "manifest_schema"),
    "arrays shorter than the manifest": (arrays_shorter_than_manifest, "array_lengths"),
}


def test_clean_dataset_passes_every_check(copies: tuple[Path, Path], tmp_path: Path) -> None:
    raw, data = copies
    result = validate("sample", data, tmp_path / "out", _settings(), raw)
    assert result["passed"] and all(result["checks"].values()) and len(result["checks"]) == 12
    assert sorted(result["checks"]) == sorted(VALIDATION_CHECKS)  # the params schema knows every check
    assert json.loads((tmp_path / "out/reports/checks.json").read_text()) == result
    assert json.loads((tmp_path / "out/validation.json").read_text()) == {
        "dataset": "sample", "passed": True, "num_blocking_failures": 0, "num_warnings": result["num_warnings"],
        "num_checks": 12, "failed_checks": ""}
    assert "FAIL" not in (tmp_path / "out/summary.md").read_text()


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_planted_defect_fails_its_named_check(defect: str, copies: tuple[Path, Path], tmp_path: Path) -> None:
    raw, data = copies
    plant, check = DEFECTS[defect]
    settings = _settings()
    plant(raw, data, settings)
    with pytest.raises(MedsegError, match=rf"validation failed: .*{check}"):
        validate("sample", data, tmp_path / "out", settings, raw)
    written = json.loads((tmp_path / "out/reports/checks.json").read_text())
    assert written["passed"] is False and written["checks"][check] is False
    assert f"| {check} | FAIL | block |" in (tmp_path / "out/summary.md").read_text()


def test_a_check_set_to_warn_reports_without_blocking(copies: tuple[Path, Path], tmp_path: Path) -> None:
    raw, data = copies
    settings = _settings()
    leaked_patient(raw, data, settings)
    settings["checks"] = {**settings["checks"], "no_patient_in_two_splits": "warn"}
    result = validate("sample", data, tmp_path / "out", settings, raw)
    assert result["passed"] and not result["checks"]["no_patient_in_two_splits"] and result["num_warnings"] >= 1
    summary = (tmp_path / "out/summary.md").read_text()
    assert "| no_patient_in_two_splits | FAIL | warn |" in summary
    assert "Examples for `no_patient_in_two_splits`" in summary


def test_drift_against_another_dataset_is_reported_and_never_blocks(copies: tuple[Path, Path], tmp_path: Path) -> None:
    raw, data = copies
    reference = Path(shutil.copytree(data, tmp_path / "other_dataset"))
    _edit_manifest(reference, lambda m: m.__setitem__("intensity_mean", m["intensity_mean"] + 80.0))
    result = validate("sample", data, tmp_path / "out", _settings(), raw, reference_dir=reference)
    assert result["passed"] and set(result["drift"]) == {"drift_train_vs_test", "drift_vs_other_dataset"}
    assert result["drift"]["drift_vs_other_dataset"]["share_drifted"] > 0
    assert (tmp_path / "out/reports/drift_vs_other_dataset.html").is_file()
    assert "drift_vs_other_dataset: 1 drifted column(s) ['intensity_mean']" in (tmp_path / "out/summary.md").read_text()


def test_a_manifest_missing_a_column_is_an_error_naming_the_manifest(copies: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    raw, data = copies
    _edit_manifest(data, lambda m: m.drop(columns=["fewshot"], inplace=True))
    with pytest.raises(MedsegError, match=r"manifest.parquet: manifest lacks the column\(s\) \['fewshot'\]"):
        validate("sample", data, tmp_path / "out", _settings(), raw)
    assert not (tmp_path / "out").exists()


def test_split_failure_names_the_split_the_fractions_and_what_to_change(copies: tuple[Path, Path],
                                                                         tmp_path: Path) -> None:
    raw, data = copies
    unbalanced_split(raw, data, {})
    with pytest.raises(MedsegError) as error:
        validate("sample", data, tmp_path / "out", _settings(), raw)
    message = str(error.value)
    assert "(split_fractions: test holds 0 of 6 patients (0%), expected 20% +/- 15%" in message
    assert "ingest.split_fractions" in message and "validate.split_tolerance" in message
    assert "test holds 0 of 6 patients" in (tmp_path / "out" / "summary.md").read_text()


def test_a_split_the_splitter_could_not_do_better_passes(copies: tuple[Path, Path], tmp_path: Path) -> None:
    """Four patients: whole patients and one per split force 2:1:1, far from 7:1:2, and that is the best."""
    raw, data = copies
    keep = sorted(pd.read_parquet(data / "manifest.parquet").groupby("split")["patient"].first())
    manifest = pd.read_parquet(data / "manifest.parquet")
    patients = list(dict.fromkeys([*keep, *manifest["patient"]]))[:4]
    _edit_manifest(data, lambda m: m.__setitem__("patient", m["patient"].where(m["patient"].isin(patients),
                                                                               patients[0])))
    _edit_manifest(data, lambda m: m.__setitem__("split", m["patient"].map(
        dict(zip(patients, ["train", "train", "val", "test"], strict=True)))))
    result = validate("sample", data, tmp_path / "out", {**_settings(), "min_slices_per_split": 1}, raw)
    assert result["checks"]["split_fractions"] is True
