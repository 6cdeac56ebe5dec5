"""dvc.yaml consistency: every stage is a ``medseg`` step with known params and wired paths."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import STEP_COMPONENTS
from medseg.cli import STEPS, build_parser
from medseg.params import lookup

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
STAGES: dict[str, Any] = DVC["stages"]


TOOL_STAGES = ("datasets",)  # tool subcommands run as stages (no Kubeflow component yet)
STAGE_STEPS = {"finetune_pretrained": "finetune", "evaluate_pretrained": "evaluate"}  # a step's second stage
GIT_FOLDERS = ("registry",)  # configuration in git that stages read (custom registry entries)
OPT_IN_STAGES = ("regress",)  # stages whose matrix list may be empty by default ([] = the stage is left out)
ITEM = {"dataset": PARAMS["ingest"]["datasets"][0], "strategy": PARAMS["finetune"]["strategies"][0],
        "mode": PARAMS["finetune"]["modes"][0], "profile": PARAMS["finetune"]["profiles"][0],
        "init": PARAMS["finetune"]["pretrained"]["inits"][0], "network": "unet", "backbone": "vit_t",
        "baseline": "main"}


def _expand(text: str) -> str:
    """Resolve ${params.key} and ${item.x} (the first matrix value) for checking purposes."""
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key.startswith("item."):
            return ITEM[key.removeprefix("item.")]
        return str(lookup(PARAMS, key))
    return re.sub(r"\$\{([^}]+)\}", substitute, text)


def _commands(name: str) -> list[list[str]]:
    commands = STAGES[name]["cmd"] if isinstance(STAGES[name]["cmd"], list) else [STAGES[name]["cmd"]]
    return [shlex.split(_expand(command)) for command in commands]


def test_stages_steps_and_components_have_the_same_names() -> None:
    """One stage per step (finetune and evaluate have a second one, for the pretrained inits), one component each."""
    step_names = [name for name, *_ in STEPS]
    assert [name for name in STAGES if name not in TOOL_STAGES and name not in STAGE_STEPS] == step_names
    assert set(STAGE_STEPS) <= set(STAGES) and set(STAGE_STEPS.values()) <= set(step_names)
    assert [name for name in STEP_COMPONENTS if name != "pull"] == step_names  # pull: `dvc pull` locally


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_cmd_is_its_medseg_subcommand_and_parses(name: str) -> None:
    """A stage runs its step; the baseline stage then scores the network with `medseg evaluate`."""
    steps = _commands(name)
    step = STAGE_STEPS.get(name, name)
    assert [argv[:2] for argv in steps] == [["medseg", step]] + [["medseg", "evaluate"]] * (len(steps) - 1)
    for argv in steps:
        build_parser().parse_args(argv[1:])  # exits (SystemExit) on unknown or missing arguments


@pytest.mark.parametrize("name", ["finetune", "finetune_pretrained", "baseline", "evaluate", "evaluate_pretrained"])
def test_run_folders_spell_the_runs_own_axes(name: str) -> None:
    """A run's folder is <dataset>/<init>/<profile>/<mode>/<strategy> of the init, profile and mode it trains in
    (what `medseg evaluate --runs-root` and the report read), and its evaluation sits at the same place under
    results/runs."""
    for argv in _commands(name):
        args = build_parser().parse_args(argv[1:])
        if args.command == "evaluate":
            run = args.model.removeprefix("models/").removesuffix("/model.pt")
            assert args.out == f"results/runs/{run}/eval" and run.startswith(f"{args.dataset}/")
            assert run.endswith(f"/{args.strategy}") and len(run.split("/")) == 5
        elif args.command == "baseline":
            assert args.out == f"models/{args.dataset}/scratch/{args.profile}/automated/{args.network}"
        else:
            assert args.out == f"models/{args.dataset}/{args.init}/{args.profile}/{args.mode}/{args.strategy}"
            assert (args.init_weights is None) == (args.init == "sam")


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_exist(name: str) -> None:
    for key in STAGES[name].get("params", []):
        lookup(PARAMS, key)  # KeyError if params.yaml lacks it


@pytest.mark.parametrize("name", [n for n in STAGES if "matrix" in STAGES[n]])
def test_matrix_lists_come_from_params(name: str) -> None:
    """Non-empty lists, except for an opt-in stage, which an empty list leaves out of `dvc repro`."""
    for values in STAGES[name]["matrix"].values():
        resolved = lookup(PARAMS, values.strip("${}"))
        assert isinstance(resolved, list) and (resolved or name in OPT_IN_STAGES)


def test_the_regression_check_is_opt_in_and_always_rerun() -> None:
    """`dvc repro` runs no regress stage unless regress.repro_baselines names a revision (the default `dvc repro`
    stays a no-op); the stage reads every evaluation and always re-runs, since its baseline branch moves."""
    stage = STAGES["regress"]
    assert PARAMS["regress"]["repro_baselines"] == [] and stage["matrix"] == {"baseline": "${regress.repro_baselines}"}
    assert stage["always_changed"] is True and "results/runs" in stage["deps"]
    args = build_parser().parse_args(_commands("regress")[0][1:])
    assert (args.runs, args.baseline_rev, args.out) == ("results/runs", "main", "results/regress/main")


def test_every_dependency_is_produced_upstream_or_tracked() -> None:
    produced: list[str] = []
    for name, stage in STAGES.items():
        for dep in stage.get("deps", []):
            dep = _expand(dep)
            tracked = (REPO / f"{dep}.dvc").is_file() or (dep.startswith("medseg/") and (REPO / dep).exists())
            tracked = tracked or (dep in GIT_FOLDERS and (REPO / dep).is_dir())
            assert tracked or any(dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")
                                  for out in produced), f"{name}: {dep} is produced by no earlier stage"
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                produced.append(_expand(next(iter(out)) if isinstance(out, dict) else out))
