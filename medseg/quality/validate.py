"""``medseg validate``: the data gate between ingestion and training.

great-expectations checks on the manifest and per-slice statistics (blocking or warning per
``validate.checks`` in params.yaml) and evidently drift reports (train vs test, and optionally vs
another dataset; always warnings). Output directory::

    validation.json   DVC metrics: passed, counts, per-check booleans, drift shares
    summary.md        what failed, with example rows (a Kubeflow Markdown artifact too)
    reports/          drift reports as HTML (people) and JSON (machines)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.data.slice_dataset import check_ingested, open_arrays, read_manifest
from medseg.errors import MedsegError
from medseg.quality import tables as t
from medseg.quality.expectations import CheckResult, run_checks


def load_ingested(data_dir: str | Path) -> t.Ingested:
    data_dir = check_ingested(data_dir)
    images, masks = _arrays(data_dir)
    return t.Ingested(read_manifest(data_dir), images, masks, json.loads((data_dir / "ingest.json").read_text()))


def _arrays(data_dir: Path) -> tuple[Any, Any]:
    """The arrays as stored (shape mismatches are findings here, not errors)."""
    import numpy as np

    try:
        return open_arrays(data_dir)
    except MedsegError:
        return (np.load(data_dir / "images.npy", mmap_mode="r", allow_pickle=False),
                np.load(data_dir / "masks.npy", mmap_mode="r", allow_pickle=False))


def build_tables(data: t.Ingested, fractions: tuple[float, float, float], raw_dir: Path | None) -> dict[str, Any]:
    slices = t.slice_table(data)
    return {
        "manifest": data.manifest, "slices": slices, "labels": t.label_table(data),
        "patient_splits": t.patient_split_table(data.manifest), "hash_splits": t.hash_split_table(slices),
        "splits": t.split_table(data.manifest, fractions, data.summary.get("grouping", "patient")),
        "sources": t.source_table(data.manifest, raw_dir),
    }


def _drift(data: t.Ingested, reports: Path, reference_dir: Path | None) -> list[dict[str, Any]]:
    from medseg.quality.drift import between_datasets_drift, within_dataset_drift

    summaries = [within_dataset_drift(data.manifest, reports)]
    if reference_dir is not None:
        reference = read_manifest(reference_dir)
        summaries.append(between_datasets_drift(reference, data.manifest, reports, reference_dir.name))
    return summaries


def validate(dataset: str, data_dir: str | Path, out_dir: str | Path, settings: dict[str, Any],
             raw_dir: str | Path | None = None, reference_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the checks and drift reports, write the outputs, and return the result dict; raises
    ``MedsegError`` (after writing) when a blocking check fails."""
    data = load_ingested(data_dir)
    raw = Path(raw_dir) if raw_dir else None
    checks_settings = {**settings, "labels": [int(k) for k in data.summary["labels"]],
                       "expect_nonempty_masks": settings["drop_empty_slices"] and data.summary.get("labeled", True)}
    tables = build_tables(data, tuple(settings["split_fractions"]), raw)
    results = run_checks(tables, checks_settings, selected=lambda name: name != "source_files_exist" or raw is not None)
    out_dir = Path(out_dir)
    (out_dir / "reports").mkdir(parents=True, exist_ok=True)
    drift = _drift(data, out_dir / "reports", Path(reference_dir) if reference_dir else None)
    modes = settings["checks"]
    blocking = [r for r in results if not r.passed and modes.get(r.name, "block") == "block"]
    warnings = [r for r in results if not r.passed and modes.get(r.name, "block") != "block"]
    result = _metrics(dataset, results, blocking, warnings, drift)
    (out_dir / "validation.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (out_dir / "summary.md").write_text(markdown_summary(dataset, results, modes, drift))
    if blocking:
        names = ", ".join(r.name for r in blocking)
        raise MedsegError(f"validation failed: {names}; details in {out_dir / 'summary.md'}", data_dir)
    return result


def _metrics(dataset: str, results: list[CheckResult], blocking: list[CheckResult], warnings: list[CheckResult],
             drift: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dataset": dataset, "passed": not blocking, "num_blocking_failures": len(blocking),
        "num_warnings": len(warnings) + sum(bool(d.get("drifted_columns")) for d in drift),
        "checks": {r.name: r.passed for r in results},
        "drift": {d["name"]: {"share_drifted": d.get("share_drifted", 0.0), "skipped": bool(d.get("skipped"))}
                  for d in drift},
    }


def markdown_summary(dataset: str, results: list[CheckResult], modes: dict[str, str],
                     drift: list[dict[str, Any]]) -> str:
    lines = [f"# Validation of `{dataset}`", "", "| check | result | mode | detail |", "|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {'pass' if r.passed else 'FAIL'} | {modes.get(r.name, 'block')} | {r.detail} |")
    for r in (r for r in results if not r.passed and r.examples):
        lines += ["", f"Examples for `{r.name}`:", ""] + [f"- `{example}`" for example in r.examples]
    lines += ["", "## Drift (warnings only)", ""]
    for d in drift:
        state = d.get("skipped") or f"{len(d.get('drifted_columns', []))} drifted column(s) " \
                                    f"{d.get('drifted_columns', [])}; report reports/{d['name']}.html"
        lines.append(f"- {d['name']}: {state}")
    return "\n".join(lines) + "\n"
