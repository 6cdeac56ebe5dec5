"""Reliability battery, `medseg report` and the names that end up in paths, tables and HTML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from battery import one_line, snapshot, write_params

from medseg.eval.report_html import markdown_to_html

HOSTILE = "<img src=x onerror=alert(1)>"


def _metrics(runs: Path, dataset: str, strategy: str = "vit_t_dec_vanilla") -> Path:
    path = runs / "sample" / "sam" / "full" / "automated" / "vit_t_dec_vanilla" / "eval" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dataset": dataset, "strategy": strategy, "mode": "automated", "dice_mean": 0.5,
                                "num_slices": 3, "num_patients": 1}))
    return path


@pytest.mark.parametrize("name", [HOSTILE, "ct/liver", "a|b"])
def test_report_refuses_run_names_that_are_not_plain(name: str, run_step, tmp_path: Path) -> None:
    path = _metrics(tmp_path / "runs", name)
    params = write_params(tmp_path / "params.yaml")
    outcome = run_step("report", "--runs", tmp_path / "runs", "--out", tmp_path / "report", "--params", params)
    one_line(outcome, str(path), "is not a valid name")
    assert not (tmp_path / "report").exists()


def test_report_html_escapes_raw_html(tmp_path: Path) -> None:
    page = markdown_to_html(f"# medseg results\n\n| dataset |\n|---|\n| {HOSTILE} |\n\n{HOSTILE}\n", tmp_path)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


@pytest.mark.parametrize("argv", [
    ("finetune", "--dataset", "../victim", "--strategy", "vit_t_dec_vanilla"),
    ("finetune", "--dataset", "sample", "--strategy", "../../vit_t_dec_vanilla"),
    ("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--mode", "../box"),
    ("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--profile", "../full"),
    ("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--init", "../sam"),
    ("baseline", "--dataset", "sample", "--network", "unet", "--profile", "../fewshot"),
    ("evaluate", "--dataset", "a/b", "--strategy", "vit_t_dec_vanilla", "--model", "model.pt"),
    ("ingest", "--dataset", "..", "--raw", "raw"),
], ids=["finetune dataset", "finetune strategy", "finetune mode", "finetune profile", "finetune init",
        "baseline profile", "evaluate dataset", "ingest dataset"])
def test_names_that_would_become_paths_are_refused(argv: tuple[str, ...], run_step, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", lambda p: p["finetune"].update(work_dir=str(tmp_path / "work")))
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    data = ("--data", "data") if argv[0] != "ingest" else ()
    outcome = run_step(*argv, *data, "--out", tmp_path / "out", "--params", params)
    assert outcome.code == 2 and len(outcome.errors) == 1
    assert "name" in outcome.errors[0] or "strategy" in outcome.errors[0] or "mode" in outcome.errors[0]
    assert snapshot(tmp_path) == before


def test_export_sam_into_an_existing_folder_leaves_no_temporary_file(run_step, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    outcome = run_step("export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "64", "--out", folder,
                       "--params", write_params(tmp_path / "params.yaml"))
    one_line(outcome, str(folder), "existing folder")
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert not list(tmp_path.glob(".models*"))


def test_export_sam_replaces_its_own_file_but_no_other(run_step, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml")
    args = ("export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "64", "--params", params)
    assert run_step(*args, "--out", tmp_path / "model.pt").code == 0
    assert run_step(*args, "--out", tmp_path / "model.pt").code == 0
    (tmp_path / "notes.pt").write_text("not a model\n")
    one_line(run_step(*args, "--out", tmp_path / "notes.pt"), "was not written by `medseg export_sam`")
    assert (tmp_path / "notes.pt").read_text() == "not a model\n"
