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
GIT_FOLDERS = ("registry",)  # configuration in git that stages read (custom registry entries)
ITEM = {"dataset": PARAMS["ingest"]["datasets"][0], "strategy": PARAMS["finetune"]["strategies"][0],
        "mode": PARAMS["finetune"]["modes"][0], "network": "unet", "backbone": "vit_t"}


def _expand(text: str) -> str:
    """Resolve ${params.key} and ${item.x} (the first matrix value) for checking purposes."""
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key.startswith("item."):
            return ITEM[key.removeprefix("item.")]
        return str(lookup(PARAMS, key))
    return re.sub(r"\$\{([^}]+)\}", substitute, text)


def test_stages_steps_and_components_have_the_same_names() -> None:
    step_names = [name for name, *_ in STEPS]
    assert [name for name in STAGES if name not in TOOL_STAGES] == step_names
    assert [name for name in STEP_COMPONENTS if name != "pull"] == step_names  # pull: `dvc pull` locally


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_cmd_is_its_medseg_subcommand_and_parses(name: str) -> None:
    """A stage runs its step; the baseline stage then scores the network with `medseg evaluate`."""
    commands = STAGES[name]["cmd"] if isinstance(STAGES[name]["cmd"], list) else [STAGES[name]["cmd"]]
    steps = [shlex.split(_expand(command)) for command in commands]
    assert [argv[:2] for argv in steps] == [["medseg", name]] + [["medseg", "evaluate"]] * (len(steps) - 1)
    for argv in steps:
        build_parser().parse_args(argv[1:])  # exits (SystemExit) on unknown or missing arguments


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_params_exist(name: str) -> None:
    for key in STAGES[name].get("params", []):
        lookup(PARAMS, key)  # KeyError if params.yaml lacks it


@pytest.mark.parametrize("name", [n for n in STAGES if "matrix" in STAGES[n]])
def test_matrix_lists_come_from_params(name: str) -> None:
    for values in STAGES[name]["matrix"].values():
        resolved = lookup(PARAMS, values.strip("${}"))
        assert isinstance(resolved, list) and resolved


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
