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


def test_no_two_stages_of_a_full_grid_share_an_output_path(tmp_path: Path) -> None:
    """Every output path of every expanded stage is its own, over datasets x strategies x modes (5-shot
    included) x baselines x pretraining backbones (DVC's own expansion, outputs read from its index)."""
    params = tiny_params()
    params["sample"]["datasets"], params["ingest"]["datasets"] = [], ["mri_prostate", "us_breast"]
    params["finetune"].update(strategies=["vit_t_dec_vanilla", "vit_b_endec_lora"],
                              modes=["automated", "box", "automated_5shot"])
    params["baseline"].update(models=["unet", "swinunet", "nnunet"], modes=["automated", "automated_5shot"])
    params["pretrain_mae"]["backbones"] = params["pretrain_sup"]["backbones"] = ["vit_t", "vit_b"]
    _stages(tmp_path / "grid", params)
    code = ("import json, sys; from dvc.repo import Repo; "
            "print(json.dumps([[s.addressing, str(o.def_path)] for s in Repo(sys.argv[1]).index.stages "
            "for o in s.outs]))")
    listed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "grid")], check=True, capture_output=True,
                            text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    outs = yaml.safe_load(listed.stdout.strip().splitlines()[-1])
    paths = [path for _, path in outs]
    cells, baselines = 2 * 2 * 3, 2 * 3 * 2  # datasets x strategies x modes; datasets x networks x modes
    expected = 1 + 2 + 2 + cells + baselines + 2 + 2 + cells + 1  # datasets, ingest, validate, finetune, ...
    assert len({stage for stage, _ in outs}) == expected  # every stage with outputs was expanded
    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
    assert not [p for p in paths for q in paths if p != q and q.startswith(p.rstrip("/") + "/")]  # none inside another
