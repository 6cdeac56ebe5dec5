"""The opt-in `regress@<rev>` stage of `dvc repro`, in a throwaway git + DVC copy of the project: its committed
evaluations on branch main are the baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import project_copy, run_tool, tiny_params

RUN = "sample/sam/full/automated/vit_t_dec_vanilla"


def test_the_regress_stage_passes_on_main_reruns_every_time_and_fails_on_a_drop(tmp_path: Path) -> None:
    params = tiny_params()
    params["regress"]["repro_baselines"] = ["main"]
    root = project_copy(tmp_path / "p", params)  # the project's committed evaluations, in its git history
    run_tool(["git", "branch", "main"], root)
    stages = run_tool(["dvc", "stage", "list", "--name-only"], root).stdout.split()
    assert "regress@main" in stages
    first = run_tool(["dvc", "repro", "--single-item", "regress@main"], root)  # the evaluations as committed
    assert "Running stage 'regress@main'" in first.stdout
    report = json.loads((root / "results/regress/main/regress.json").read_text())
    assert report["passed"] is True and {c["verdict"] for c in report["comparisons"]} == {"ok"}
    assert "regress@main" in yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    again = run_tool(["dvc", "repro", "--single-item", "regress@main"], root)  # main may have moved since
    assert "Running stage 'regress@main'" in again.stdout

    metrics = root / "results/runs" / RUN / "eval/metrics.json"
    values = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**values, "dice_mean": values["dice_mean"] - 0.2}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    failed = subprocess.run(["dvc", "repro", "--single-item", "regress@main"], cwd=root, env=env, capture_output=True,
                            text=True, check=False)
    assert failed.returncode != 0
    assert "regress: FAILED against results/runs at main (" in failed.stdout
    assert f"{RUN} dice_mean dropped from {values['dice_mean']:.4f}" in failed.stdout
