"""Reliability battery, `medseg validate` and the ingested data every later step reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from battery import one_line


@pytest.fixture
def data(ingested_sample: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ingested_sample, tmp_path / "processed"))


def _validate(run_step, data: Path, out: Path, params: Path, *extra: str | Path):
    return run_step("validate", "--dataset", "sample", "--data", data, "--out", out, "--params", params, *extra)


def test_arrays_shorter_than_the_manifest_block_the_gate(run_step, data: Path, params: Path, tmp_path: Path) -> None:
    for name in ("images.npy", "masks.npy"):
        np.save(data / name, np.load(data / name)[:-2])
    one_line(_validate(run_step, data, tmp_path / "out", params), "validation failed: array_lengths")
    assert "| array_lengths | FAIL | block |" in (tmp_path / "out" / "summary.md").read_text()


def test_finetune_on_arrays_shorter_than_the_manifest_is_one_line(run_step, data: Path, params: Path,
                                                                  tmp_path: Path) -> None:
    for name in ("images.npy", "masks.npy"):
        np.save(data / name, np.load(data / name)[:-2])
    outcome = run_step("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data", data,
                       "--out", tmp_path / "model", "--params", params)
    one_line(outcome, "manifest.parquet", "rows but the arrays hold")
    assert not (tmp_path / "model").exists()


def test_missing_reference_leaves_no_drift_reports(run_step, data: Path, params: Path, tmp_path: Path) -> None:
    outcome = _validate(run_step, data, tmp_path / "out", params, "--reference", tmp_path / "nonexistent")
    one_line(outcome, "nonexistent")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_pickled_images_array_is_refused_without_loading_it(run_step, data: Path, params: Path,
                                                            tmp_path: Path) -> None:
    np.save(data / "images.npy", np.array([{"payload": 1}], dtype=object), allow_pickle=True)
    one_line(_validate(run_step, data, tmp_path / "out", params), "images.npy", "cannot read array")
    assert not (tmp_path / "out").exists()


def test_corrupt_ingest_summary_is_one_line(run_step, data: Path, params: Path, tmp_path: Path) -> None:
    (data / "ingest.json").write_text('{"labels": ')
    one_line(_validate(run_step, data, tmp_path / "out", params), "ingest.json", "corrupt ingest summary")
    assert not (tmp_path / "out").exists()


def test_manifest_missing_a_column_names_the_manifest(run_step, data: Path, params: Path, tmp_path: Path) -> None:
    assert run_step("export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "64", "--out",
                    tmp_path / "model.pt", "--params", params).code == 0
    manifest = pd.read_parquet(data / "manifest.parquet").drop(columns=["split"])
    manifest.to_parquet(data / "manifest.parquet", index=False)
    outcome = run_step("evaluate", "--dataset", "sample", "--strategy", "vit_t_zeroshot", "--data", data,
                       "--model", tmp_path / "model.pt", "--out", tmp_path / "eval", "--params", params)
    one_line(outcome, "manifest.parquet", "lacks the column(s) ['split']")
    assert "params" not in outcome.errors[0]


def test_validate_rerun_replaces_its_own_output(run_step, data: Path, params: Path, tmp_path: Path) -> None:
    assert _validate(run_step, data, tmp_path / "out", params).code == 0
    (tmp_path / "out" / "reports" / "stale.html").write_text("old")
    assert _validate(run_step, data, tmp_path / "out", params).code == 0
    assert not (tmp_path / "out" / "reports" / "stale.html").exists()
