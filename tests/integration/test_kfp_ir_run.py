"""The compiled Kubeflow pipelines, executed task by task as local processes (pipelines.local_executor):
the same commands and arguments the cluster runs, pulling the commit's data from a local DVC remote."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from helpers import REPO, busi_layout, hippocampus_layout, project_copy, run_tool, tiny_params
from pipelines.compile import compile_pipeline
from pipelines.local_executor import TaskFailed, run_pipeline

SECRETS = {"medseg-s3": {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                         "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}}  # a local remote ignores them
CPU = {"finetune": {"device": "cpu"}, "evaluate": {"device": "cpu"}}


def _project(root: Path, params: dict[str, Any], datasets: dict[str, Any]) -> Path:
    """A git + DVC copy of the project with ``datasets`` (alias -> writer) added and pushed to its remote."""
    project_copy(root, params, skip=("results/", "models/", "data/processed/", "data/datasets/"))
    run_tool(["dvc", "remote", "add", "-f", "-d", "local", str(root.parent / f"{root.name}-remote")], root)
    for alias, write in datasets.items():
        write(root / "data/raw" / alias)
        run_tool(["dvc", "add", "-q", f"data/raw/{alias}"], root)
    run_tool(["git", "add", "-A"], root)
    run_tool(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data"], root)
    run_tool(["dvc", "push", "-q"], root)
    return root


def _run(root: Path, ir: Path, override: dict[str, Any], workdir: Path) -> Any:
    return run_pipeline(ir, workdir, {"params_override": json.dumps(override)}, cwd=root,
                        env={"MEDSEG_PROJECT_DIR": str(root), "MEDSEG_GIT_SHA": "0" * 40, "OMP_NUM_THREADS": "2",
                             "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"},
                        secrets=SECRETS, log=lambda _: None)


def _phantom(folder: Path) -> None:
    run_tool(["medseg", "sample", "--out", str(folder), "--params", str(REPO / "params.yaml")], REPO)


def test_a_dataset_name_that_disagrees_with_its_data_fails_at_ingest(tmp_path: Path) -> None:
    params = tiny_params()
    params["kubeflow"]["pipelines"]["demo"]["datasets"] = ["us_breast"]
    root = _project(tmp_path / "p", params, {"us_breast": _phantom})
    ir = compile_pipeline("demo", params, tmp_path / "demo.yaml", "test", root / "params.yaml")
    with pytest.raises(TaskFailed, match=r"ingest.*synthetic phantom"):
        _run(root, ir, CPU, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("model.pt"))


@pytest.mark.slow  # the demo at its real settings, with its two pretrainings first: about 6-10 minutes on 2 cores
def test_committed_demo_pipeline_gets_the_dice_of_dvc_repro(tmp_path: Path) -> None:
    """pipelines/compiled/demo.yaml, run on the commit's pinned sample and pretraining outputs, scores what
    `dvc repro` scored, and fine-tunes from the SSLSAM and SupSAM weights the commit pins."""
    expected = {name: json.loads((REPO / f"results/runs/sample/{folder}/{name}/eval/metrics.json").read_text())
                for folder, name in (("sam/full/automated", "vit_t_dec_vanilla"), ("scratch/full/automated", "unet"))}
    root = tmp_path / "p"
    project_copy(root, yaml.safe_load((REPO / "params.yaml").read_text()), skip=("results/", "models/"))
    run_tool(["dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote")], root)
    run_tool(["dvc", "repro", "-s", "sample@sample"], root)  # the pinned phantom, as dvc.lock records it
    pretraining = ["pretrain_mae@vit_t", "pretrain_sup@vit_t"]  # the inits the demo grid fine-tunes from
    run_tool(["dvc", "repro", *pretraining], root)  # pinned afresh in this copy's dvc.lock
    run_tool(["dvc", "push", "-q", "data/raw/sample", *pretraining], root)
    shutil.rmtree(root / "data/raw/sample")
    shutil.rmtree(root / "models/pretrain")
    run = _run(root, REPO / "pipelines/compiled/demo.yaml", {}, tmp_path / "run")
    assert [t.name.split("/")[-1] for t in run.tasks_of("baseline")] == ["baseline"]  # the demo's UNet
    report = pd.read_csv(run.tasks_of("report")[-1].outputs["report_dir"][0] / "report.csv")  # the final one
    assert sorted(zip(report["init"], report["strategy"], strict=True)) == [
        ("sam", "vit_t_dec_vanilla"), ("scratch", "unet"), ("sslsam", "vit_t_dec_vanilla"),
        ("supsam", "vit_t_dec_vanilla")]
    for name, metrics in expected.items():
        ours = report.loc[(report["strategy"] == name) & report["init"].isin(["sam", "scratch"]), "dice_mean"]
        assert ours.iloc[0] == pytest.approx(metrics["dice_mean"], abs=1e-6), name
    assert report.loc[report["init"].isin(["sslsam", "supsam"]), "random_init"].all()  # demo pretraining: random
    assert len(run.tasks_of("evaluate")) == 4
    assert run.warnings == []  # nothing the cluster's driver or launcher would do differently
    assert run.task("ingest").metadata["processed"]["git_sha"] == "0" * 40


@pytest.mark.slow  # 8 tiny trainings and 2 baselines, with evaluations: about 5-7 minutes on 2 cores
def test_two_by_two_by_two_grid_and_baselines_request_gpus_and_report_ten_rows(tmp_path: Path) -> None:
    params = tiny_params()
    params["sample"]["datasets"], params["ingest"]["datasets"], params["ingest"]["overrides"] = [], ["us_breast"], {}
    params["kubeflow"]["pipelines"]["grid"] = {
        "profile": "demo", "gpu": True, "datasets": ["us_breast", "mri_hippocampus"],
        "strategies": ["vit_t_dec_vanilla", "vit_t_endec_lora"], "modes": ["automated", "box"], "baselines": ["unet"],
        "parallelism": 2}
    root = _project(tmp_path / "p", params, {"us_breast": busi_layout, "mri_hippocampus": hippocampus_layout})
    ir = compile_pipeline("grid", params, tmp_path / "grid.yaml", "test", root / "params.yaml")
    tiny = {**CPU, "ingest": {"image_size": 64}, "finetune": {"device": "cpu", "max_epochs": 1},
            "evaluate": {"device": "cpu", "bootstrap_samples": 50, "overlay_slices": 2}}
    run = _run(root, ir, tiny, tmp_path / "run")
    trainings = run.tasks_of("finetune")
    assert len(trainings) == 8 and all(t.resources["accelerator_type"] == "nvidia.com/gpu" for t in trainings)
    assert {t.resources["accelerator_count"] for t in trainings} == {"1"}
    assert all(loop["parallelism"] == 2 for loop in run.loops.values())
    baselines = run.tasks_of("baseline")  # one UNet per dataset, in the automated mode, on one GPU
    assert len(baselines) == 2 and all(t.resources["accelerator_count"] == "1" for t in baselines)
    reports = run.tasks_of("report")  # one per dataset, then the final one over those
    assert len(reports) == 3
    report = pd.read_csv(reports[-1].outputs["report_dir"][0] / "report.csv")
    assert len(report) == 10 and set(report["dataset"]) == {"us_breast", "mri_hippocampus"}
    assert (report["strategy"] == "unet").sum() == 2
    assert run.warnings == []
    evaluations = run.tasks_of("evaluate")
    assert all({"dice_mean", "iou_mean", "hd95_mean", "nsd_mean"} <= set(t.metadata["metrics"]) for t in evaluations)
