"""The compiled regression pipeline, executed task by task as local processes (pipelines.local_executor): the models
a commit pins, pulled from its DVC remote with their test data, evaluated, then `medseg regress` against the
evaluations the commit records."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from helpers import project_copy, run_tool, tiny_params
from pipelines.compile import compile_pipeline
from pipelines.local_executor import TaskFailed, run_pipeline

SECRETS = {"medseg-s3": {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                         "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}}  # a local remote ignores them
RUN = "sample/sam/full/automated/vit_t_dec_vanilla"


@pytest.mark.slow  # a tiny `dvc repro` (one SAM run), then the pipeline twice: about 2-3 minutes on 2 cores
def test_the_pinned_model_scores_what_the_commit_records_and_a_raised_baseline_fails(tmp_path: Path) -> None:
    params = tiny_params()
    params["finetune"]["pretrained"]["inits"] = []
    params["pretrain_mae"]["backbones"] = params["pretrain_sup"]["backbones"] = params["baseline"]["models"] = []
    params["evaluate"].update(bootstrap_samples=50, overlay_slices=1)
    root = project_copy(tmp_path / "p", params, skip=("results/", "models/", "data/processed/", "data/datasets/"))
    run_tool(["dvc", "remote", "add", "-f", "-d", "local", str(tmp_path / "remote")], root)
    run_tool(["dvc", "repro"], root)
    run_tool(["git", "add", "-A"], root)
    run_tool(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pinned"], root)
    run_tool(["dvc", "push", "-q"], root)
    ir = compile_pipeline("regression", params, tmp_path / "regression.yaml", "test", root / "params.yaml")
    env = {"MEDSEG_PROJECT_DIR": str(root), "MEDSEG_GIT_SHA": "0" * 40, "OMP_NUM_THREADS": "2",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    cpu = json.dumps({"evaluate": {"device": "cpu"}})

    run = run_pipeline(ir, tmp_path / "run", {"params_override": cpu}, cwd=root, env=env, secrets=SECRETS,
                       log=lambda _: None)
    assert [task.component for task in run.tasks_of("pull")] and len(run.tasks_of("evaluate")) == 1
    report = json.loads((run.task("regress").outputs["regress_dir"][0] / "regress.json").read_text())
    assert report["passed"] is True and {c["verdict"] for c in report["comparisons"]} == {"ok"}
    assert {c["delta"] for c in report["comparisons"]} <= {0.0, None}  # the same numbers (None: HD95 undefined)
    assert run.task("regress").outputs["table"][0].read_text().startswith("# Regression check")

    spec = next(yaml.safe_load_all((tmp_path / "regression.yaml").read_text()))
    baseline = json.loads(spec["root"]["inputDefinitions"]["parameters"]["baseline"]["defaultValue"])
    baseline["runs"][RUN]["dice_mean"] += 0.2  # as if the baseline scored far better
    with pytest.raises(TaskFailed, match=r"'regress' \(comp-regress\) exited with 1 after 1 attempt\(s\)"):  # no retry
        run_pipeline(ir, tmp_path / "raised", {"params_override": cpu, "baseline": json.dumps(baseline)}, cwd=root,
                     env=env, secrets=SECRETS, log=lambda _: None)
    summary = next((tmp_path / "raised").rglob("regress/stdout.log")).read_text().strip().splitlines()[-1]
    assert summary.startswith("regress: FAILED against --baseline-text: ") and f"{RUN} dice_mean dropped" in summary
