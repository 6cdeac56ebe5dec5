"""Evaluation of an exported model and the results report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import peft_config
from medseg.errors import MedsegError
from medseg.eval.evaluate import evaluate
from medseg.eval.report import write_report
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import model_spec
from medseg.models.segmenter import SamSegmenter

SPEC = model_spec("vit_t_dec_vanilla", peft_config())


@pytest.fixture(scope="module")
def runs(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    export_checkpoint(SamSegmenter("vit_t", 64, 2), root / "model.pt", SPEC, {"mode": "automated", "epoch": 0})
    evaluate("sample", "vit_t_dec_vanilla", ingested_sample, root / "model.pt",
             root / "runs/sample/automated/vit_t_dec_vanilla/eval", batch_size=4)
    return root / "runs"


def test_evaluate_scores_every_test_slice(runs: Path, ingested_sample: Path) -> None:
    eval_dir = runs / "sample/automated/vit_t_dec_vanilla/eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    per_slice = pd.read_parquet(eval_dir / "per_slice.parquet")
    assert metrics["num_slices"] == (manifest["split"] == "test").sum() == len(per_slice)
    assert set(per_slice["patient"]) == set(manifest.loc[manifest["split"] == "test", "patient"])
    assert 0.0 <= metrics["dice_mean"] <= 1.0
    assert metrics["dice_mean"] == pytest.approx(per_slice["dice_mean"].mean())
    assert metrics["synthetic_data"] is True


def test_evaluate_refuses_a_model_of_another_input_size(ingested_sample: Path, tmp_path: Path) -> None:
    export_checkpoint(SamSegmenter("vit_t", 128, 2), tmp_path / "model.pt", SPEC, {})
    with pytest.raises(MedsegError, match="128px"):
        evaluate("sample", "s", ingested_sample, tmp_path / "model.pt", tmp_path / "eval", 4)
    assert not (tmp_path / "eval").exists()


def test_report_tables_every_run(runs: Path, tmp_path: Path) -> None:
    table = write_report(runs, tmp_path / "report").read_text()
    metrics = json.loads((runs / "sample/automated/vit_t_dec_vanilla/eval/metrics.json").read_text())
    assert f"| sample (synthetic) | vit_t_dec_vanilla | automated | {100 * metrics['dice_mean']:.2f}" in table
    assert "not patient data" in table
    assert len(pd.read_csv(tmp_path / "report/report.csv")) == 1


def test_report_without_runs_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    with pytest.raises(MedsegError, match="no evaluated runs"):
        write_report(tmp_path / "runs", tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_report_names_a_corrupt_metrics_file(tmp_path: Path) -> None:
    bad = tmp_path / "runs/sample/automated/x/eval/metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(MedsegError, match=r"x/eval/metrics\.json: corrupt"):
        write_report(tmp_path / "runs", tmp_path / "report")


@pytest.mark.parametrize("mode", ["point", "box"])
def test_prompted_models_are_scored_on_prompted_foreground_slices(mode: str, ingested_sample: Path,
                                                                   tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_checkpoint(SamSegmenter("vit_t", 64, 2, mode), tmp_path / "model.pt", SPEC, {"epoch": 0})
    metrics = evaluate("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "model.pt", tmp_path / "eval", 4)
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    per_slice = pd.read_parquet(tmp_path / "eval/per_slice.parquet")
    test = manifest[manifest["split"] == "test"]
    assert metrics["mode"] == mode and len(per_slice) == metrics["num_slices"] <= len(test)
    assert per_slice["dice_class_1"].notna().all()  # every scored slice has a prompted object
    again = evaluate("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "model.pt", tmp_path / "eval2", 4)
    assert again["dice_mean"] == metrics["dice_mean"]  # the test prompts are reproducible
