"""The stages `dvc repro` expands from params.yaml (DVC's own parser, in a throwaway DVC project)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import REPO, tiny_params

DVC = str(Path(sys.executable).parent / "dvc")


def _stages(tmp_path: Path, params: dict, dvc_yaml: str | None = None) -> list[str]:
    tmp_path.mkdir()
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text() if dvc_yaml is None else dvc_yaml)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run([DVC, "init", "-q", "--no-scm"], cwd=tmp_path, check=True, env=env)
    listed = subprocess.run([DVC, "stage", "list", "--name-only"], cwd=tmp_path, check=True, env=env,
                            capture_output=True, text=True)
    return listed.stdout.split()


def _outputs(tmp_path: Path, params: dict, dvc_yaml: str | None = None) -> list[tuple[str, str]]:
    """(stage, output path) of every expanded stage, from DVC's own index (its graph checks left out)."""
    _stages(tmp_path, params, dvc_yaml)
    code = ("import json, sys; from dvc.repo import Repo; "
            "print(json.dumps([[s.addressing, str(o.def_path)] for s in Repo(sys.argv[1]).index.stages "
            "for o in s.outs]))")
    listed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True,
                            text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    return [tuple(pair) for pair in yaml.safe_load(listed.stdout.strip().splitlines()[-1])]


def _shared(paths: list[str]) -> list[str]:
    """Output paths written by more than one stage, or lying inside another output."""
    return sorted({p for p in paths if paths.count(p) > 1} |
                  {p for p in paths for q in paths if p != q and q.startswith(p.rstrip("/") + "/")})


def test_the_demo_phantom_stage_runs_only_when_listed(tmp_path: Path) -> None:
    params = tiny_params()
    assert "sample@sample" in _stages(tmp_path / "demo", params)
    params["sample"]["datasets"] = []
    params["ingest"]["datasets"] = ["mri_prostate"]
    stages = _stages(tmp_path / "real", params)
    assert not [s for s in stages if s.startswith("sample")] and "ingest@mri_prostate" in stages


def _full_grid() -> dict:
    """Two datasets x two strategies x two modes x both profiles from SAM's weights, the same from SSLSAM's and
    SupSAM's weights (pretrained on both backbones), and three baselines on both profiles."""
    params = tiny_params()
    params["sample"]["datasets"], params["ingest"]["datasets"] = [], ["mri_prostate", "us_breast"]
    strategies = ["vit_t_dec_vanilla", "vit_b_endec_lora"]
    params["finetune"].update(strategies=strategies, modes=["automated", "box"], profiles=["full", "fewshot"],
                              pretrained={"inits": ["sslsam", "supsam"], "strategies": strategies,
                                          "modes": ["automated"], "profiles": ["full", "fewshot"]})
    params["baseline"].update(models=["unet", "swinunet", "nnunet"], profiles=["full", "fewshot"])
    params["pretrain_mae"]["backbones"] = params["pretrain_sup"]["backbones"] = ["vit_t", "vit_b"]
    return params


def test_no_two_stages_of_a_full_grid_share_an_output_path(tmp_path: Path) -> None:
    """Every output path of every expanded stage is its own, over datasets x strategies x modes x profiles,
    pretrained inits, baselines x profiles and pretraining backbones (DVC's own expansion, outputs read from its
    index)."""
    outs = _outputs(tmp_path / "grid", _full_grid())
    paths = [path for _, path in outs]
    cells = 2 * 2 * 2 * 2  # datasets x strategies x modes x profiles, from SAM's weights
    pretrained = 2 * 2 * 2 * 1 * 2  # datasets x inits x strategies x modes x profiles
    baselines = 2 * 3 * 2  # datasets x networks x profiles
    expected = 1 + 2 + 2 + cells + baselines + 2 + 2 + pretrained + cells + pretrained + 1  # datasets, ingest, ...
    assert len({stage for stage, _ in outs}) == expected  # every stage with outputs was expanded
    assert not _shared(paths), _shared(paths)
    runs = {path.removeprefix("models/").removesuffix("/model.pt") for path in paths
            if path.endswith("/model.pt")}
    assert len(runs) == cells + pretrained + baselines
    assert {run.split("/")[1] for run in runs} == {"sam", "sslsam", "supsam", "scratch"}  # <dataset>/<init>/...
    assert {"mri_prostate/sam/fewshot/box/vit_b_endec_lora", "us_breast/supsam/fewshot/automated/vit_t_dec_vanilla",
            "us_breast/scratch/fewshot/automated/nnunet"} <= runs
    evaluated = {path.removeprefix("results/runs/").removesuffix("/eval/metrics.json") for path in paths
                 if path.endswith("/eval/metrics.json")}
    assert evaluated == runs  # every run is evaluated in the folder of its own name


def test_a_grid_whose_paths_drop_an_axis_is_caught(tmp_path: Path) -> None:
    """The check above is not vacuous: pretrained runs whose paths leave out the init (sslsam and supsam runs of
    one cell in one folder), or SAM runs whose paths leave out the profile, share their outputs."""
    text = (REPO / "dvc.yaml").read_text()
    no_init = text.replace("${item.dataset}/${item.init}/${item.profile}", "${item.dataset}/${item.profile}")
    no_profile = text.replace("${item.dataset}/sam/${item.profile}/", "${item.dataset}/sam/")
    assert no_init != text and no_profile != text
    shared = {name: _shared([path for _, path in _outputs(tmp_path / name, _full_grid(), dvc_yaml)])
              for name, dvc_yaml in (("no_init", no_init), ("no_profile", no_profile))}
    assert "models/mri_prostate/full/automated/vit_b_endec_lora/model.pt" in shared["no_init"]
    assert "results/runs/us_breast/sam/box/vit_t_dec_vanilla/eval/metrics.json" in shared["no_profile"]


def test_regress_stages_are_opt_in_one_per_baseline_revision(tmp_path: Path) -> None:
    """regress.repro_baselines: [] (the default) adds no stage; each revision listed adds regress@<rev>, writing its
    own report folder, beside every other output."""
    params = tiny_params()
    assert not [s for s in _stages(tmp_path / "default", params) if s.startswith("regress")]
    params["regress"]["repro_baselines"] = ["main", "release-2"]
    outs = _outputs(tmp_path / "two", params)
    regress = [(stage.rpartition(":")[2], path) for stage, path in outs if ":regress@" in f":{stage}"]
    assert regress == [("regress@main", "results/regress/main"), ("regress@release-2", "results/regress/release-2")]
    assert not _shared([path for _, path in outs])
