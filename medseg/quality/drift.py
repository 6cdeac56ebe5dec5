"""Distribution drift of per-slice statistics between manifests (evidently ``DataDriftPreset``).

Each report writes ``<name>.html`` (self-contained: evidently embeds its JS and font, nothing is
fetched) and ``<name>.json`` (the snapshot's metrics and tests), and returns a small summary::

    {"name", "reference_rows", "current_rows", "drifted_columns": [...], "share_drifted": float,
     "dataset_drift": bool, "columns": {col: {"drift_score", "drifted", "method", "threshold"}},
     "skipped_columns": {col: reason}}

plus ``"skipped": reason`` (and no evidently files) when either side has too few rows for a test.
The summary is always written too, as ``<name>_summary.json``, so a reports folder is never empty
(DVC warns about an empty output folder) and a skipped report says why.

evidently picks the test per column: for <= 1000 reference rows K-S (p-value, drift when below the
threshold), Z-test / chi-square for <= 5 distinct values; above that, normed Wasserstein /
Jensen-Shannon distance (drift when at or above the threshold). ``drifted`` is read from the
per-column test evidently reports, so the direction is always the one of the method used.

evidently and pandas are imported lazily so that the CLI starts fast; its usage telemetry (only
sent by its UI service and collector) is switched off before the import in any case.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.atomic import atomic_file
from medseg.errors import MedsegError

if TYPE_CHECKING:
    import pandas as pd

DRIFT_COLUMNS = ("intensity_mean", "intensity_std", "mask_fraction", "height", "width")
MIN_ROWS = 5  # below this a two-sample test is meaningless (evidently would still return a verdict)
DRIFT_SHARE = 0.5  # evidently's default: the dataset drifts when at least this share of columns does
_TELEMETRY_OPT_OUT = {"DO_NOT_TRACK": "1", "ITERATIVE_DO_NOT_TRACK": "1"}  # evidently, iterative_telemetry
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _evidently() -> tuple[Any, Any, Any, Any]:
    """``Report, Dataset, DataDefinition, DataDriftPreset`` with telemetry opted out first."""
    for key, value in _TELEMETRY_OPT_OUT.items():
        os.environ.setdefault(key, value)
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    return Report, Dataset, DataDefinition, DataDriftPreset


def _numeric(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns as float with non-numbers and infinities as NaN, on a fresh index."""
    import numpy as np
    import pandas as pd

    out = frame[columns].apply(pd.to_numeric, errors="coerce").astype(float)
    return out.replace([np.inf, -np.inf], np.nan).reset_index(drop=True)


def _usable_columns(reference: pd.DataFrame, current: pd.DataFrame,
                    min_rows: int) -> tuple[list[str], dict[str, str]]:
    """The drift columns to test, and the reason for each one left out."""
    columns, skipped = [], {}
    for column in DRIFT_COLUMNS:
        if column not in reference.columns or column not in current.columns:
            skipped[column] = "missing from " + ("reference" if column not in reference.columns else "current")
            continue
        valid = min(int(_numeric(f, [column])[column].notna().sum()) for f in (reference, current))
        if valid < min_rows:
            skipped[column] = f"{valid} numeric values on one side, need >= {min_rows}"
        else:
            columns.append(column)
    return columns, skipped


def _status(test: dict[str, Any]) -> str:
    status = test.get("status")
    return str(getattr(status, "value", status)).upper()


def _parse(result: dict[str, Any], columns: list[str]) -> dict[str, dict[str, Any]]:
    """Per-column drift from ``Snapshot.dict()``: a ``ValueDrift`` metric per column (value = score,
    config = method and threshold) and, with ``include_tests``, a test per column (FAIL = drift)."""
    per_column: dict[str, dict[str, Any]] = {}
    for metric in result.get("metrics", []):
        config = metric.get("config") or {}
        column = config.get("column")
        if str(config.get("type", "")).endswith("ValueDrift") and column in columns:
            score, method = float(metric["value"]), str(config.get("method"))
            threshold = None if config.get("threshold") is None else float(config["threshold"])
            fallback = threshold is not None and (score < threshold if "p_value" in method else score >= threshold)
            per_column[column] = {"drift_score": score, "drifted": fallback, "method": method, "threshold": threshold}
    for test in result.get("tests", []):
        params = (test.get("metric_config") or {}).get("params") or {}
        column = params.get("column")
        if str(params.get("type", "")).endswith("ValueDrift") and column in per_column:
            per_column[column]["drifted"] = _status(test) == "FAIL"
    missing = [c for c in columns if c not in per_column]
    if missing:
        raise MedsegError(f"evidently returned no drift result for columns {missing}")
    return per_column


def _summary(name: str, reference: pd.DataFrame, current: pd.DataFrame, columns: dict[str, dict[str, Any]],
             skipped_columns: dict[str, str], skipped: str | None = None) -> dict[str, Any]:
    drifted = [c for c, r in columns.items() if r["drifted"]]
    share = len(drifted) / len(columns) if columns else 0.0
    summary = {"name": name, "reference_rows": len(reference), "current_rows": len(current),
               "drifted_columns": drifted, "share_drifted": share,
               "dataset_drift": bool(columns) and share >= DRIFT_SHARE, "columns": columns,
               "skipped_columns": skipped_columns}
    return {**summary, "skipped": skipped} if skipped else summary


def _write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path, name: str,
                 *, min_rows: int = MIN_ROWS) -> dict[str, Any]:
    """Run ``DataDriftPreset`` on the ``DRIFT_COLUMNS`` of both frames (reference vs current), write
    ``<out_dir>/<name>.html`` and ``.json`` and return the summary (see the module docstring).

    The summary goes to ``<name>_summary.json`` in every case; the evidently files are not written,
    and ``"skipped"`` says why, when either frame has fewer than ``min_rows`` rows or no drift column
    is usable in both."""
    if not _NAME.match(name):
        raise MedsegError(f"drift report name {name!r} is not a plain file name")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    summary = _evidently_report(reference, current, Path(out_dir), name, min_rows)
    _write_text(Path(out_dir) / f"{name}_summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _evidently_report(reference: pd.DataFrame, current: pd.DataFrame, out_dir: Path, name: str,
                      min_rows: int) -> dict[str, Any]:
    """The evidently report's files and summary, or the summary of a skipped report."""
    usable, skipped_columns = _usable_columns(reference, current, min_rows)
    if min(len(reference), len(current)) < min_rows:
        reason = (f"too few rows for a drift test: reference {len(reference)}, current {len(current)}, "
                  f"need >= {min_rows} each")
        return _summary(name, reference, current, {}, skipped_columns, reason)
    if not usable:
        return _summary(name, reference, current, {}, skipped_columns, "no drift column usable in both")
    report_cls, dataset_cls, definition_cls, preset_cls = _evidently()
    definition = definition_cls(numerical_columns=usable)
    ref, cur = (dataset_cls.from_pandas(_numeric(f, usable), data_definition=definition) for f in (reference, current))
    report = report_cls([preset_cls(columns=usable, drift_share=DRIFT_SHARE)], include_tests=True)
    with warnings.catch_warnings():
        # a constant column (height, width) has zero spread: numpy warns while evidently plots it
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(current_data=cur, reference_data=ref, name=name)
        html = snapshot.get_html_str(as_iframe=False)
    columns = _parse(snapshot.dict(), usable)
    _write_text(out_dir / f"{name}.html", html)  # Snapshot.save_html ignores a Path (str only)
    _write_text(out_dir / f"{name}.json", snapshot.json())
    return _summary(name, reference, current, columns, skipped_columns)


def within_dataset_drift(manifest: pd.DataFrame, out_dir: Path, *, min_rows: int = MIN_ROWS) -> dict[str, Any]:
    """Drift of the test split (current) against the train split (reference) of one manifest."""
    if "split" not in manifest.columns:
        raise MedsegError("manifest has no 'split' column")
    train, test = (manifest[manifest["split"] == s] for s in ("train", "test"))
    return drift_report(train, test, out_dir, "drift_train_vs_test", min_rows=min_rows)


def between_datasets_drift(reference_manifest: pd.DataFrame, current_manifest: pd.DataFrame, out_dir: Path,
                           reference_name: str, *, min_rows: int = MIN_ROWS) -> dict[str, Any]:
    """Drift of a whole manifest (current) against another dataset's manifest (reference)."""
    return drift_report(reference_manifest, current_manifest, out_dir, f"drift_vs_{reference_name}",
                        min_rows=min_rows)
