"""Reliability battery, `medseg regress`: corrupt evaluations and baselines, hostile run names (the table goes into
pull-request comments), and where the report may be written. Each is one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from battery import one_line, snapshot, write_params

RUN = "sample/sam/full/automated/vit_t_dec_vanilla"
METRICS = {"dataset": "sample", "strategy": "vit_t_dec_vanilla", "mode": "automated", "dice_mean": 0.5,
           "dice_volume_mean": 0.5, "iou_mean": 0.4, "nsd_mean": 0.3, "hd95_mean": 10.0}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / RUN / "eval/metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(METRICS))
    (tmp_path / "baseline.json").write_text(json.dumps({"runs": {RUN: METRICS}}))
    return tmp_path / "runs"


def _regress(run_step, tmp_path: Path, *extra: str | Path):
    params = write_params(tmp_path / "params.yaml")
    before = snapshot(tmp_path)
    outcome = run_step("regress", "--runs", tmp_path / "runs", "--baseline", tmp_path / "baseline.json",
                       "--params", params, *extra)
    return outcome, before


def test_a_corrupt_evaluation_is_named(runs: Path, run_step, tmp_path: Path) -> None:
    metrics = runs / RUN / "eval/metrics.json"
    for text, problem in (('{"dice_mean": 0.5', "corrupt metrics file"), ('{"dice_mean": "high"}', "dice_mean is not a "
                                                                           "number ('high')"), ("[1]", "not a JSON")):
        metrics.write_text(text)
        outcome, before = _regress(run_step, tmp_path, "--out", tmp_path / "out")
        one_line(outcome, str(metrics), problem)
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("run", ["sample/sam/full/automated/<img src=x onerror=alert(1)>", "a|b/sam/full/automated/x",
                                 "../../etc/passwd"])
def test_a_baseline_runs_name_that_is_not_plain_is_refused(run: str, runs: Path, run_step, tmp_path: Path) -> None:
    (tmp_path / "baseline.json").write_text(json.dumps({"runs": {run: METRICS}}))
    outcome, before = _regress(run_step, tmp_path, "--out", tmp_path / "out")
    one_line(outcome, str(tmp_path / "baseline.json"), "is not a run <dataset>/<init>/<profile>/<mode>/<strategy>")
    assert snapshot(tmp_path) == before


def test_an_evaluated_runs_folder_that_is_not_plain_is_refused(runs: Path, run_step, tmp_path: Path) -> None:
    hostile = runs / "sample/sam/full/automated/a|b/eval"
    hostile.mkdir(parents=True)
    (hostile / "metrics.json").write_text(json.dumps(METRICS))
    outcome, _ = _regress(run_step, tmp_path, "--out", tmp_path / "out")
    one_line(outcome, str(hostile / "metrics.json"), "'sample/sam/full/automated/a|b' is not a run")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["runs/sample/report", "runs", "."], ids=["inside the runs", "the runs", "cwd"])
def test_the_report_never_lands_in_or_over_its_inputs(out: str, runs: Path, run_step, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    outcome, before = _regress(run_step, tmp_path, "--out", out)
    assert outcome.code == 2 and len(outcome.errors) == 1
    assert snapshot(tmp_path) == before


def test_an_output_folder_of_another_step_or_of_the_user_is_not_replaced(runs: Path, run_step, tmp_path: Path) -> None:
    mine = tmp_path / "out"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep\n")
    outcome, before = _regress(run_step, tmp_path, "--out", mine)
    one_line(outcome, "holds files `medseg regress` did not write (e.g. notes.txt)")
    assert snapshot(tmp_path) == before
    (mine / "notes.txt").unlink()
    (mine / ".medseg-step").write_text('{"step": "report"}\n')
    outcome, before = _regress(run_step, tmp_path, "--out", mine)
    one_line(outcome, "was written by `medseg report`")
    assert snapshot(tmp_path) == before


def test_a_second_run_replaces_its_own_report(runs: Path, run_step, tmp_path: Path) -> None:
    outcome, _ = _regress(run_step, tmp_path, "--out", tmp_path / "out")
    assert outcome.code == 0 and (tmp_path / "out/regress.md").is_file()
    outcome, _ = _regress(run_step, tmp_path, "--out", tmp_path / "out")
    assert outcome.code == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".medseg-step", "provenance.json", "regress.json", "regress.md"]
