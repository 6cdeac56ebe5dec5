"""Drift reports between manifests: planted shifts are found, edge cases neither crash nor go online."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medseg.quality.drift import DRIFT_COLUMNS, between_datasets_drift, drift_report, within_dataset_drift


def _frame(seed: int, n: int = 200, offset: float = 0.0, height: int = 256) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "intensity_mean": rng.normal(100.0, 10.0, n) + offset, "intensity_std": rng.normal(30.0, 3.0, n),
        "mask_fraction": rng.uniform(0.0, 0.2, n), "height": np.full(n, height), "width": np.full(n, 256),
        "split": np.where(np.arange(n) % 2 == 0, "train", "test"),
    })


def test_identical_distributions_drift_nowhere_and_write_html_and_json(tmp_path: Path) -> None:
    frame = _frame(0)
    summary = drift_report(frame, frame.copy(), tmp_path, "same")
    assert summary["drifted_columns"] == [] and summary["share_drifted"] == 0.0 and not summary["dataset_drift"]
    assert set(summary["columns"]) == set(DRIFT_COLUMNS) and summary["skipped_columns"] == {}
    assert (summary["reference_rows"], summary["current_rows"]) == (200, 200) and "skipped" not in summary
    html = (tmp_path / "same.html").read_text(encoding="utf-8")
    assert all(column in html for column in DRIFT_COLUMNS)
    assert json.loads((tmp_path / "same.json").read_text())["metrics"]


def test_a_planted_shift_drifts_only_the_shifted_column(tmp_path: Path) -> None:
    summary = drift_report(_frame(1), _frame(2, offset=40.0), tmp_path, "shifted")
    assert summary["drifted_columns"] == ["intensity_mean"]
    column = summary["columns"]["intensity_mean"]
    assert column["drifted"] and column["drift_score"] < 0.05 and "K-S" in column["method"]
    assert summary["share_drifted"] == pytest.approx(1 / len(DRIFT_COLUMNS)) and not summary["dataset_drift"]


def test_constant_columns_do_not_crash_and_a_changed_constant_drifts(tmp_path: Path) -> None:
    summary = drift_report(_frame(3), _frame(3, height=512), tmp_path, "constant")
    assert summary["drifted_columns"] == ["height"]
    assert not summary["columns"]["width"]["drifted"]


def test_too_few_rows_are_skipped_with_only_the_summary_written(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    summary = drift_report(_frame(4, n=50), _frame(5, n=1), out, "tiny")
    assert "too few rows" in summary["skipped"] and summary["columns"] == {} and summary["drifted_columns"] == []
    assert [p.name for p in out.iterdir()] == ["tiny_summary.json"]  # never an empty folder (DVC warns)
    assert json.loads((out / "tiny_summary.json").read_text()) == summary


def test_missing_and_empty_columns_are_recorded_as_skipped(tmp_path: Path) -> None:
    current = _frame(6).drop(columns=["width"]).assign(mask_fraction=np.nan)
    summary = drift_report(_frame(7), current, tmp_path, "partial")
    assert set(summary["skipped_columns"]) == {"width", "mask_fraction"}
    assert set(summary["columns"]) == {"intensity_mean", "intensity_std", "height"}


def test_within_and_between_dataset_names(tmp_path: Path) -> None:
    within = within_dataset_drift(_frame(8), tmp_path)
    between = between_datasets_drift(_frame(9), _frame(10, offset=40.0), tmp_path, "sample")
    assert (within["name"], within["reference_rows"], within["current_rows"]) == ("drift_train_vs_test", 100, 100)
    assert between["name"] == "drift_vs_sample" and "intensity_mean" in between["drifted_columns"]
    assert {p.name for p in tmp_path.iterdir()} == {f"{n}{e}" for n in (within["name"], between["name"])
                                                    for e in (".html", ".json", "_summary.json")}
    assert json.loads((tmp_path / "drift_vs_sample_summary.json").read_text()) == between


def test_a_name_with_a_path_is_refused(tmp_path: Path) -> None:
    from medseg.errors import MedsegError

    with pytest.raises(MedsegError, match="plain file name"):
        drift_report(_frame(11), _frame(12), tmp_path, "../escape")


def test_reports_run_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)  # telemetry posts from a child process
    summary = drift_report(_frame(13), _frame(14, offset=40.0), tmp_path, "offline")
    assert "intensity_mean" in summary["drifted_columns"] and (tmp_path / "offline.html").is_file()
    assert os.environ.get("DO_NOT_TRACK") and os.environ.get("ITERATIVE_DO_NOT_TRACK")
