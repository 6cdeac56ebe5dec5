"""``medseg validate``: blocking checks of an ingested dataset before anything trains on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.atomic import write_json
from medseg.data.slice_dataset import check_ingested, open_arrays, read_manifest
from medseg.data.split import SPLITS

MANIFEST_COLUMNS = ("row", "dataset", "patient", "case", "slice_index", "split", "fewshot", "mask_fraction")


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Ingested:
    manifest: Any
    images: np.ndarray
    masks: np.ndarray
    summary: dict[str, Any]


def _schema(d: Ingested, _: dict[str, Any]) -> CheckResult:
    missing = [c for c in MANIFEST_COLUMNS if c not in d.manifest.columns]
    rows_ok = len(d.manifest) == len(d.images)
    return CheckResult("manifest_schema", not missing and rows_ok,
                       f"missing columns {missing}" if missing else
                       f"{len(d.manifest)} manifest rows for {len(d.images)} slices")


def _image_size(d: Ingested, p: dict[str, Any]) -> CheckResult:
    size = int(p["image_size"])
    ok = d.images.shape[1:] == (size, size) and d.images.dtype == np.uint8 and d.masks.dtype == np.uint8
    return CheckResult("image_size_and_dtype", ok,
                       f"images {d.images.shape} {d.images.dtype}, masks {d.masks.dtype}; expected "
                       f"(N, {size}, {size}) uint8")


def _labels(d: Ingested, _: dict[str, Any]) -> CheckResult:
    allowed = {int(k) for k in d.summary["labels"]}
    present = set(np.unique(d.masks).tolist())
    return CheckResult("mask_labels_in_label_map", present <= allowed,
                       f"present {sorted(present)}, allowed {sorted(allowed)}")


def _no_empty_masks(d: Ingested, p: dict[str, Any]) -> CheckResult:
    empty = int((d.masks.reshape(len(d.masks), -1).max(axis=1) == 0).sum())
    ok = empty == 0 or not p["drop_empty_slices"] or not d.summary.get("labeled", True)
    return CheckResult("no_empty_masks", ok, f"{empty} slices with an empty mask")


def _patient_leakage(d: Ingested, _: dict[str, Any]) -> CheckResult:
    per_patient = d.manifest.groupby("patient")["split"].nunique()
    leaked = sorted(per_patient[per_patient > 1].index.tolist())
    return CheckResult("no_patient_in_two_splits", not leaked,
                       f"patients in several splits: {leaked[:5]}" if leaked else "none")


def _split_counts(d: Ingested, p: dict[str, Any]) -> CheckResult:
    counts = {s: int((d.manifest["split"] == s).sum()) for s in SPLITS}
    low = [s for s, n in counts.items() if n < int(p["min_slices_per_split"])]
    return CheckResult("min_slices_per_split", not low, f"slices per split {counts}")


CHECKS: tuple[Callable[[Ingested, dict[str, Any]], CheckResult], ...] = (
    _schema, _image_size, _labels, _no_empty_masks, _patient_leakage, _split_counts,
)


def run_checks(data_dir: str | Path, settings: dict[str, Any]) -> list[CheckResult]:
    """Run every check; ``settings`` holds image_size, drop_empty_slices, min_slices_per_split."""
    data_dir = check_ingested(data_dir)
    images, masks = open_arrays(data_dir)
    ingested = Ingested(read_manifest(data_dir), images, masks,
                        json.loads((data_dir / "ingest.json").read_text()))
    return [check(ingested, settings) for check in CHECKS]


def validate(dataset: str, data_dir: str | Path, out_path: str | Path,
             settings: dict[str, Any]) -> tuple[bool, list[CheckResult]]:
    """Run the checks and write the JSON result (DVC metrics); returns (passed, results)."""
    results = run_checks(data_dir, settings)
    passed = all(r.passed for r in results)
    write_json(out_path, {  # DVC metrics: booleans and counts only; details go to the console
        "dataset": dataset, "passed": passed,
        "checks": {r.name: r.passed for r in results},
        "num_failed": sum(not r.passed for r in results),
    })
    return passed, results
