"""The report covers the datasets params.yaml lists; runs of others (the committed demo) stay out."""

from __future__ import annotations

import json
from pathlib import Path

from medseg.eval.report import write_report


def _run(runs: Path, dataset: str, dice: float) -> None:
    path = runs / dataset / "sam" / "full" / "automated" / "vit_t_dec_vanilla" / "eval" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": dataset, "strategy": "vit_t_dec_vanilla", "mode": "automated",
                                "dice_mean": dice, "num_slices": 4, "num_patients": 2}))


def test_runs_of_datasets_not_listed_are_left_out_and_named(tmp_path: Path) -> None:
    _run(tmp_path / "runs", "sample", 0.4947)
    _run(tmp_path / "runs", "mri_prostate", 0.8123)
    report = write_report(tmp_path / "runs", tmp_path / "report", datasets=["mri_prostate"]).read_text()
    assert "mri_prostate" in report and "81.23" in report
    assert "| sample" not in report and "49.47" not in report
    assert "Left out: runs of sample (not in `ingest.datasets`" in report
    everything = write_report(tmp_path / "runs", tmp_path / "report").read_text()
    assert "| sample" in everything and "Left out" not in everything
