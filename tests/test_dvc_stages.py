"""The stages `dvc repro` expands from params.yaml (DVC's own parser, in a throwaway DVC project)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import REPO, tiny_params

DVC = str(Path(sys.executable).parent / "dvc")


def _stages(tmp_path: Path, params: dict) -> list[str]:
    tmp_path.mkdir()
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([DVC, "init", "-q", "--no-scm"], cwd=tmp_path, check=True, env=env)
    listed = subprocess.run([DVC, "stage", "list", "--name-only"], cwd=tmp_path, check=True, env=env,
                            capture_output=True, text=True)
    return listed.stdout.split()


def test_the_demo_phantom_stage_runs_only_when_listed(tmp_path: Path) -> None:
    params = tiny_params()
    assert "sample@sample" in _stages(tmp_path / "demo", params)
    params["sample"]["datasets"] = []
    params["ingest"]["datasets"] = ["mri_prostate"]
    stages = _stages(tmp_path / "real", params)
    assert not [s for s in stages if s.startswith("sample")] and "ingest@mri_prostate" in stages
