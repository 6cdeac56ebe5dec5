"""`dvc repro` of the whole pipeline on a tiny profile, in a throwaway copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import project_copy, run_tool, tiny_params

BIN = Path(sys.executable).parent
_run = run_tool


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the project's files, with tiny params, after one `dvc repro`."""
    root = project_copy(tmp_path_factory.mktemp("project"), tiny_params())
    _run(["dvc", "repro"], root)
    return root


def test_repro_produces_the_report(project: Path) -> None:
    report = (project / "results/report/report.md").read_text()
    assert "| sample (synthetic) (random init) | automated | vit_t_dec_vanilla | sam | all |" in report
    assert "### Table 6" in report and "**" in report  # the demo's cell beside the paper's ViT-T values
    assert (project / "results/report/figures/strategies_vs_baselines.png").is_file()
    assert (project / "models/sample/sam/full/automated/vit_t_dec_vanilla/model.pt").is_file()
    for init in ("sslsam", "supsam"):  # finetune.pretrained: from the demo's pretraining (models/pretrain/<init>)
        assert (project / f"models/pretrain/{init}/vit_t").is_dir()
        assert (project / f"models/sample/{init}/full/automated/vit_t_dec_vanilla/model.pt").is_file()
        assert f"| sample (synthetic) (random init) | automated | vit_t_dec_vanilla | {init} | all |" in report
    assert (project / "models/sample/scratch/full/automated/unet/model.pt").is_file()


def test_second_repro_is_a_no_op(project: Path) -> None:
    result = _run(["dvc", "repro"], project)
    assert "Running stage" not in result.stdout
    assert "up to date" in result.stdout


def test_metrics_and_plots_show(project: Path) -> None:
    metrics = json.loads(_run(["dvc", "metrics", "show", "--json"], project).stdout)
    files = next(iter(metrics.values()))["data"]
    eval_metrics = files["results/runs/sample/sam/full/automated/vit_t_dec_vanilla/eval/metrics.json"]["data"]
    assert 0.0 <= eval_metrics["dice_mean"] <= 1.0
    assert files["results/validation/sample/validation.json"]["data"]["passed"] is True
    _run(["dvc", "plots", "show", "-o", "plots_html"], project)
    page = (project / "plots_html/index.html").read_text()
    assert "loss" in page and "strategies_vs_baselines.png" in page  # curves and report figures


def test_push_then_pull_restores_outputs(project: Path) -> None:
    _run(["dvc", "push"], project)
    assert any((project / ".dvc-remote").rglob("*"))
    model = project / "models/sample/sam/full/automated/vit_t_dec_vanilla/model.pt"
    digest = model.read_bytes()
    shutil.rmtree(project / ".dvc/cache")
    model.unlink()
    _run(["dvc", "pull"], project)
    assert model.read_bytes() == digest


def test_repro_stops_at_validation_and_keeps_good_outputs(project: Path) -> None:
    """Runs last: a broken gate setting makes validation fail; nothing downstream runs or changes."""
    model = project / "models/sample/sam/full/automated/vit_t_dec_vanilla/model.pt"
    before = model.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["validate"]["min_slices_per_split"] = 10_000
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "min_slices_per_split" in result.stdout + result.stderr
    assert "Running stage 'finetune" not in result.stdout
    assert model.read_bytes() == before
    assert (project / "results/report/report.md").is_file()
