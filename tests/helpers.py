"""Helpers shared by the tests (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from medseg.models.strategies import PeftConfig

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sample": {"num_patients": 6, "shape": [32, 32, 8]},
    "ingest": {"image_size": 64, "workers": 1},
    "finetune": {"max_epochs": 2, "batch_size": 4, "warmup_iters": 2},
    "evaluate": {"batch_size": 8},
}


def tiny_params() -> dict[str, Any]:
    """A fresh copy of the repository's params.yaml with sizes shrunk for fast tests."""
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    for section, values in TINY_OVERRIDES.items():
        params[section].update(values)
    return params


def peft_config() -> PeftConfig:
    """The Adapter/LoRA placements of the repository's params.yaml."""
    return PeftConfig.from_params(tiny_params()["models"])


def run_tool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command of the environment (dvc, git, medseg) in ``cwd``; fail the test when it fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def project_copy(root: Path, params: dict[str, Any], skip: tuple[str, ...] = ()) -> Path:
    """A fresh git repository at ``root`` holding the project's files (minus paths starting with ``skip``)
    and ``params`` as params.yaml, committed."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(skip):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for args in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        run_tool(args, root)
    return root
