"""The hosted CI workflow of the regression check (.github/workflows/regression.yml), checked offline: triggers,
full history, the README's set-up, credentials from secrets, pull -> repro -> `medseg regress` (a command the CLI
parses), the table in the job summary and the pull request, and a failed job on a regression."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

import pytest
import yaml

from helpers import REPO
from medseg.cli import build_parser

WORKFLOW = REPO / ".github/workflows/regression.yml"
DATA = yaml.safe_load(WORKFLOW.read_text())
JOB = DATA["jobs"]["regress"]
STEPS: list[dict[str, Any]] = JOB["steps"]
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")


def _index(fragment: str) -> int:
    """The first step whose script holds ``fragment``."""
    return next(i for i, step in enumerate(STEPS) if fragment in step.get("run", ""))


def _script(fragment: str) -> str:
    return STEPS[_index(fragment)]["run"]


def test_it_runs_on_pull_requests_and_by_hand_and_may_comment() -> None:
    triggers = DATA.get("on", DATA.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"pull_request", "workflow_dispatch"} <= set(triggers)
    assert "baseline" in triggers["workflow_dispatch"]["inputs"]
    assert DATA["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_checkout_keeps_the_history_and_the_environment_is_the_readmes() -> None:
    """The baseline revision's evaluations are read from git; the environment is `make test`'s (.venv from the
    locks), with nothing installed beside it."""
    checkout = next(step for step in STEPS if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    python = next(step for step in STEPS if step.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    assert "make venv" in _script("make venv") and "make test" in (REPO / "README.md").read_text()
    assert re.search(r"^test: \$\(STAMP\)", (REPO / "Makefile").read_text(), re.M)  # make test builds .venv first
    scripts = " ".join(step.get("run", "") for step in STEPS)
    assert not re.search(r"pip3? install|apt-get|curl |wget ", scripts)


def test_credentials_come_from_secrets_by_reference() -> None:
    env = JOB["env"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        assert env[key] == f"${{{{ secrets.{key} }}}}"
    for step in STEPS:  # expressions never reach a script (no injection from branch names or inputs)
        assert not EXPRESSION.search(step.get("run", "")), step["name"]


def test_pull_then_repro_then_regress_and_the_command_parses() -> None:
    pull, repro, regress = _index("dvc pull"), _index("dvc repro"), _index("medseg regress")
    assert pull < repro < regress
    line = next(line for line in _script("medseg regress").splitlines() if "medseg regress" in line)
    argv = shlex.split(line.replace("$REPORT", "results/regress/ci")
                       .replace('${BASELINE:+--baseline-rev "$BASELINE"}', "--baseline-rev origin/main"))
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.runs, args.out, args.baseline_rev) == ("regress", "results/runs", "results/regress/ci",
                                                                      "origin/main")
    assert JOB["env"]["REPORT"] == "results/regress/ci"
    assert "format('origin/{0}', github.base_ref)" in JOB["env"]["BASELINE"]  # a pull request: its base branch


def test_the_stage_filters_name_stages_of_dvc_yaml() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for fragment in ("dvc pull", "dvc repro"):
        names = re.search(r"\^\(([a-z_|]+)\)@", _script(fragment)).group(1).split("|")
        assert set(names) <= set(stages) and {"evaluate", "baseline"} <= set(names)
    assert "--single-item" in _script("dvc repro")  # the pinned models are evaluated, never retrained upstream


@pytest.mark.parametrize("script", [step["run"] for step in STEPS if "run" in step],
                         ids=[step["name"] for step in STEPS if "run" in step])
def test_every_script_is_valid_bash(script: str) -> None:
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_table_reaches_the_summary_and_the_pull_request_and_a_regression_fails_the_job() -> None:
    regress = STEPS[_index("medseg regress")]
    assert regress["id"] == "regress" and "set +e" in regress["run"]
    assert 'code=$?" >> "$GITHUB_OUTPUT"' in regress["run"]  # the table is posted before the job fails
    summary = STEPS[_index("GITHUB_STEP_SUMMARY")]
    assert summary["if"].startswith("always()") and '"$REPORT/regress.md" >> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    comment = STEPS[_index("gh pr comment")]
    assert "github.event_name == 'pull_request'" in comment["if"] and comment["if"].startswith("always()")
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert comment["run"] == 'gh pr comment "$PR" --body-file "$REPORT/regress.md"'
    fail = STEPS[-1]
    assert fail["if"] == "steps.regress.outputs.code != '0'" and fail["run"].rstrip().endswith("exit 1")
