"""``medseg validate``: the data gate between ingestion and training.

great-expectations checks on the manifest and per-slice statistics (blocking or warning per
``validate.checks`` in params.yaml) and evidently drift reports (train vs test, and optionally vs
another dataset; always warnings). Output directory::

    validation.json   DVC metrics, the headline only: passed, counts, the names of failed checks
    summary.md        what failed, with example rows (a Kubeflow Markdown artifact too)
    reports/          checks.json (every check's result, drift shares), drift reports as HTML (people)
                      and JSON (machines)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.data.slice_dataset import check_ingested, read_ingest_summary, read_manifest
from medseg.errors import MedsegError
from medseg.outputs import output_dir
from medseg.quality import tables as t
from medseg.quality.expectations import CheckResult, run_checks


def load_ingested(data_dir: str | Path) -> t.Ingested:
    data_dir = check_ingested(data_dir)
    images, masks = _array(data_dir / "images.npy"), _array(data_dir / "masks.npy")
    return t.Ingested(read_manifest(data_dir), images, masks, read_ingest_summary(data_dir))


def _array(path: Path) -> Any:
    """An array as stored: unreadable (or pickled) is an error, a wrong shape or length is a finding."""
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MedsegError(f"cannot read array ({exc})", path) from exc
    if array.ndim != 3:
        raise MedsegError(f"expected slices (N, S, S), got shape {array.shape}", path)
    return array


def build_tables(data: t.Ingested, fractions: tuple[float, float, float], raw_dir: Path | None,
                 tolerance: float) -> dict[str, Any]:
    slices = t.slice_table(data)
    return {
        "manifest": data.manifest, "slices": slices, "labels": t.label_table(data),
        "patient_splits": t.patient_split_table(data.manifest), "hash_splits": t.hash_split_table(slices),
        "splits": t.split_table(data.manifest, fractions, data.summary.get("grouping", "patient"), tolerance),
        "sources": t.source_table(data.manifest, raw_dir), "arrays": t.array_table(data),
    }


def _drift(data: t.Ingested, reports: Path, reference_dir: Path | None) -> list[dict[str, Any]]:
    from medseg.quality.drift import between_datasets_drift, within_dataset_drift

    summaries = [within_dataset_drift(data.manifest, reports)]
    if reference_dir is not None:
        reference = read_manifest(reference_dir)
        summaries.append(between_datasets_drift(reference, data.manifest, reports, reference_dir.name))
    return summaries


def _checks(data: t.Ingested, settings: dict[str, Any], raw: Path | None) -> list[CheckResult]:
    checks_settings = {**settings, "labels": [int(k) for k in data.summary["labels"]],
                       "expect_nonempty_masks": settings["drop_empty_slices"] and data.summary.get("labeled", True)}
    tables = build_tables(data, tuple(settings["split_fractions"]), raw, float(settings["split_tolerance"]))
    return run_checks(tables, checks_settings, selected=lambda name: name != "source_files_exist" or raw is not None)


def validate(dataset: str, data_dir: str | Path, out_dir: str | Path, settings: dict[str, Any],
             raw_dir: str | Path | None = None, reference_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the checks and drift reports, write the outputs atomically, and return the result dict;
    raises ``MedsegError`` (after writing) when a blocking check fails."""
    raw = Path(raw_dir) if raw_dir else None
    reference = Path(reference_dir) if reference_dir else None
    with output_dir("validate", out_dir, [data_dir, raw, reference]) as tmp:
        data = load_ingested(data_dir)
        if raw is not None and not raw.is_dir():
            raise MedsegError("raw dataset directory not found", raw)
        if reference is not None:
            read_manifest(reference)  # a missing or broken reference fails before the checks run
        results = _checks(data, settings, raw)
        modes = settings["checks"]
        blocking = [r for r in results if not r.passed and modes.get(r.name, "block") == "block"]
        warnings = [r for r in results if not r.passed and modes.get(r.name, "block") != "block"]
        (tmp / "reports").mkdir()
        drift = _drift(data, tmp / "reports", reference)
        result = _metrics(dataset, results, blocking, warnings, drift)
        headline = {key: result[key] for key in HEADLINE}
        (tmp / "validation.json").write_text(json.dumps(headline, indent=2, sort_keys=True) + "\n")
        (tmp / "reports" / "checks.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        (tmp / "summary.md").write_text(markdown_summary(dataset, results, modes, drift))
    if blocking:
        names = ", ".join(r.name for r in blocking)
        first = blocking[0].detail if len(blocking[0].detail) <= 300 else blocking[0].detail[:297] + "..."
        raise MedsegError(f"validation failed: {names} ({blocking[0].name}: {first}); details in "
                          f"{Path(out_dir) / 'summary.md'}", data_dir)
    return result


HEADLINE = ("dataset", "passed", "num_blocking_failures", "num_warnings", "num_checks", "failed_checks")


def _metrics(dataset: str, results: list[CheckResult], blocking: list[CheckResult], warnings: list[CheckResult],
             drift: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dataset": dataset, "passed": not blocking, "num_blocking_failures": len(blocking),
        "num_warnings": len(warnings) + sum(bool(d.get("drifted_columns")) for d in drift),
        "num_checks": len(results), "failed_checks": ", ".join(r.name for r in results if not r.passed),
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
