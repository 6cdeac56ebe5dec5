"""The Kubeflow pipeline compiles offline and mirrors the DVC stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import tiny_params
from medseg.cli import STEPS
from pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = compile_pipeline(tiny_params(), tmp_path_factory.mktemp("kfp") / "pipeline.yaml")
    return yaml.safe_load(path.read_text())


def test_one_task_per_step(ir: dict[str, Any]) -> None:
    tasks = ir["root"]["dag"]["tasks"]
    assert sorted(tasks) == sorted(name for name, *_ in STEPS)


def test_each_task_runs_its_medseg_step_in_the_project_image(ir: dict[str, Any]) -> None:
    image = tiny_params()["kubeflow"]["image"]
    executors = ir["deploymentSpec"]["executors"]
    for name, task in ir["root"]["dag"]["tasks"].items():
        container = executors[f"exec-{task['componentRef']['name'].removeprefix('comp-')}"]["container"]
        assert container["image"] == image
        assert container["command"] == ["medseg", name]
        assert container["resources"]["resourceCpuLimit"] == tiny_params()["kubeflow"]["resources"]["cpu_limit"]


def test_training_waits_for_validation_and_report_for_evaluation(ir: dict[str, Any]) -> None:
    tasks = ir["root"]["dag"]["tasks"]
    assert "validate" in tasks["finetune"]["dependentTasks"]
    assert tasks["report"]["dependentTasks"] == ["evaluate"]


def test_compiled_copy_in_the_repo_is_current(tmp_path: Path) -> None:
    """pipelines/compiled/ must be regenerated (make pipeline) when components change."""
    repo = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    fresh = compile_pipeline(params, tmp_path / "fresh.yaml").read_text()
    assert (repo / "pipelines/compiled/medseg_demo.yaml").read_text() == fresh


def test_report_publishes_markdown_and_html_for_the_kubeflow_ui(ir: dict[str, Any]) -> None:
    outputs = ir["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    kinds = {name: spec["artifactType"]["schemaTitle"] for name, spec in outputs.items()}
    assert kinds["table"] == "system.Markdown" and kinds["page"] == "system.HTML"
    args = ir["deploymentSpec"]["executors"]["exec-report"]["container"]["args"]
    assert "--html" in args and "--markdown" in args
