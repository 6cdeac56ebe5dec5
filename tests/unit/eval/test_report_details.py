"""The report's use of each run's details: per-class Dice by name, epochs run, why an interval is blank,
and the opt-in comparison of datasets outside the study with the paper's Average row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from medseg.cli import build_parser
from medseg.errors import MedsegError
from medseg.eval.report import write_report


def _run(root: Path, dataset: str, strategy: str, metrics: dict[str, Any], details: dict[str, Any] | None) -> Path:
    folder = root / dataset / "sam" / "full" / "automated" / strategy / "eval"  # <init>/<profile>/<mode>
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({
        "dataset": dataset, "strategy": strategy, "mode": "automated", "selection": "argmax", "init": "sam",
        "dice_mean": 0.6, "num_slices": 12, "num_patients": 1, "dice_ci_low": None, "dice_ci_high": None,
        **metrics}))
    if details is not None:
        (folder / "metrics_details.json").write_text(json.dumps(details))
    return folder


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    per_class = {"anterior": {"class": 1, "dice_mean": 0.7, "dice_volume_mean": 0.72, "iou_mean": 0.55,
                              "hd95_mean": 3.0, "num_scored_slices": 12},
                 "posterior": {"class": 2, "dice_mean": 0.5, "iou_mean": 0.35, "hd95_mean": 5.0,
                               "num_scored_slices": 10}}
    _run(tmp_path / "runs", "mri_hippocampus", "vit_b_dec_lora", {"epochs_run": 14, "best_epoch": 6},
         {"per_class": per_class, "dice_ci_note": "one test patient: no interval"})
    _run(tmp_path / "runs", "sample", "vit_t_dec_vanilla", {"num_patients": 3, "dice_ci_low": 0.5,
                                                           "dice_ci_high": 0.7}, None)  # older run: no details
    return tmp_path / "runs"


def test_per_class_dice_epochs_and_blank_intervals_are_reported(runs: Path, tmp_path: Path) -> None:
    text = write_report(runs, tmp_path / "report").read_text()
    run = "| mri_hippocampus | automated | vit_b_dec_lora | sam | all"
    assert f"{run} | anterior | 70.00 | 72.00 | 55.00 | 3.0 | 12 |" in text
    assert f"{run} | posterior | 50.00 | – | 35.00 | 5.0 | 10 |" in text
    assert "| 60.00 (one test patient: no interval) |" in text and "| 12 / 1 | 14 (best 6) |" in text
    assert "| 60.00 (50.00–70.00) |" in text and "| 12 / 3 | – |" in text  # no epochs recorded: a dash
    html = (tmp_path / "report/report.html").read_text()
    assert "<h2>Dice per class</h2>" in html and "<td>posterior</td>" in html


def test_datasets_outside_the_study_are_compared_with_the_average_only_when_asked(runs: Path, tmp_path: Path) -> None:
    plain = write_report(runs, tmp_path / "plain").read_text()
    compared = pd.read_csv(tmp_path / "plain/comparison.csv")
    sample = compared[compared["dataset"] == "sample"]
    assert len(sample) and sample["paper"].isna().all() and not sample["paper_is_average"].any()
    assert "avg " not in plain and "**60.00** / –" in plain
    hippocampus = compared[compared["dataset"] == "mri_hippocampus"]
    assert hippocampus["paper"].notna().all()  # a study dataset keeps its own paper value
    averaged = write_report(runs, tmp_path / "averaged", compare_average=True).read_text()
    assert "**60.00** / avg " in averaged
    assert pd.read_csv(tmp_path / "averaged/comparison.csv").query("dataset == 'sample'")["paper_is_average"].all()


def test_the_cli_flag_turns_the_average_comparison_on() -> None:
    parser = build_parser()
    assert parser.parse_args(["report", "--runs", "r", "--out", "o", "--compare-average"]).compare_average is True
    assert parser.parse_args(["report", "--runs", "r", "--out", "o"]).compare_average is False


def test_a_zero_shot_run_is_marked_not_fine_tuned(tmp_path: Path) -> None:
    _run(tmp_path / "runs", "sample", "vit_b_zeroshot", {"num_patients": 2}, {"zeroshot": True})
    assert "| not fine-tuned |" in write_report(tmp_path / "runs", tmp_path / "report").read_text()


def test_a_corrupt_details_file_is_named(runs: Path, tmp_path: Path) -> None:
    (runs / "sample/sam/full/automated/vit_t_dec_vanilla/eval/metrics_details.json").write_text("[]")
    with pytest.raises(MedsegError, match=r"metrics_details\.json: corrupt metrics details file"):
        write_report(runs, tmp_path / "report")
