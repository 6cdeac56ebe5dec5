"""The model registry's parts: artifact names and declarations from params, the dvc.yaml block, model URIs, the
promotion gate and the check of a fetched model against its declaration."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO, tiny_params
from medseg.artifacts.committed import Committed, committed
from medseg.artifacts.declare import artifact_name, block_text, committed_artifacts, declared, replace_block
from medseg.artifacts.fetch import fetch_model, parse_uri, verify
from medseg.artifacts.publish import check_promotable
from medseg.baselines.networks import BaselineSegmenter, baseline_spec, parse_baseline
from medseg.errors import MedsegError
from medseg.models.checkpoints import export_checkpoint
from medseg.params import load_params
from medseg.provenance import dvc_hash

SETTINGS = {"stages": ["staging", "prod"], "guarded_stages": ["prod"], "default_bump": "minor"}


def test_names_follow_dvcs_rule() -> None:
    assert artifact_name("mri_prostate", "sam", "full", "box", "vit_b_endec_lora") == (
        "mri-prostate-sam-full-box-vit-b-endec-lora")
    with pytest.raises(MedsegError, match="not a valid artifact name"):
        artifact_name("sample", "unet_")
    with pytest.raises(MedsegError, match="not a valid artifact name"):  # the length limit check_artifact_name has
        artifact_name("sample", "x" * 200)


def test_declarations_follow_every_stage_list() -> None:
    params = tiny_params()
    params["ingest"]["datasets"] = ["sample", "mri_heart"]
    params["finetune"].update(strategies=["vit_t_dec_vanilla", "vit_b_dec_lora"], modes=["automated", "box"],
                              profiles=["full", "fewshot"])
    params["finetune"]["pretrained"] = {"inits": ["supsam"], "strategies": ["vit_t_dec_vanilla"], "modes": ["point"],
                                        "profiles": ["fewshot"]}
    params["baseline"].update(models=["unet", "nnunet"], profiles=["full"])
    params["pretrain_mae"]["backbones"] = []
    artifacts = declared(params)
    assert len(artifacts) == 2 * 2 * 2 * 2 + 2 + 2 * 2 + 1
    box = artifacts["mri-heart-sam-fewshot-box-vit-b-dec-lora"]
    assert box["path"] == "models/mri_heart/sam/fewshot/box/vit_b_dec_lora/model.pt" and box["type"] == "model"
    assert box["labels"] == ["mri_heart", "sam", "fewshot", "box", "vit_b_dec_lora"]
    assert box["meta"]["stage"] == "finetune@mri_heart-fewshot-box-vit_b_dec_lora"
    assert box["meta"]["metrics"] == "results/runs/mri_heart/sam/fewshot/box/vit_b_dec_lora/eval/metrics.json"
    assert artifacts["sample-supsam-fewshot-point-vit-t-dec-vanilla"]["meta"]["stage"] == (
        "finetune_pretrained@sample-supsam-fewshot-point-vit_t_dec_vanilla")
    assert artifacts["mri-heart-scratch-full-automated-nnunet"]["meta"]["stage"] == "baseline@mri_heart-nnunet-full"
    assert artifacts["pretrain-supsam-vit-t"]["path"] == "models/pretrain/supsam/vit_t/weights.pt"
    assert "pretrain-sslsam-vit-t" not in artifacts


def test_two_runs_with_one_name_are_refused() -> None:
    params = tiny_params()
    params["ingest"]["datasets"] = ["mri_heart", "mri-heart"]
    with pytest.raises(MedsegError, match="would name both"):
        declared(params)


def test_committed_dvc_yaml_declares_what_params_make() -> None:
    """dvc.yaml's artifacts must be rewritten (medseg artifacts --write) when params.yaml's lists change."""
    assert committed_artifacts(REPO / "dvc.yaml") == declared(load_params(REPO / "params.yaml"))


def test_artifacts_check_fails_once_the_block_is_edited(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.cli import main

    dvc_yaml, params = tmp_path / "dvc.yaml", tmp_path / "params.yaml"
    shutil.copyfile(REPO / "dvc.yaml", dvc_yaml)
    shutil.copyfile(REPO / "params.yaml", params)
    check = ["artifacts", "--check", "--params", str(params), "--dvc-yaml", str(dvc_yaml)]
    assert main(check) == 0
    assert "declares the" in capsys.readouterr().out
    text = dvc_yaml.read_text()
    dvc_yaml.write_text(text.replace("    path: models/", "    path: other/", 1))
    assert main(check) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(dvc_yaml) in error and "changed " in error, error
    dvc_yaml.unlink()
    assert main(check) == 2
    assert "dvc.yaml not found" in capsys.readouterr().err


def test_artifacts_write_needs_dvc_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.cli import main

    shutil.copyfile(REPO / "params.yaml", tmp_path / "params.yaml")
    assert main(["artifacts", "--write", "--params", str(tmp_path / "params.yaml"), "--dvc-yaml",
                 str(tmp_path / "dvc.yaml")]) == 2
    assert "dvc.yaml not found" in capsys.readouterr().err and not (tmp_path / "dvc.yaml").exists()


def test_dvc_reads_the_declarations() -> None:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        read = repo.artifacts.read()["dvc.yaml"]
    assert sorted(read) == sorted(declared(load_params(REPO / "params.yaml")))


def test_writing_the_block_keeps_every_other_line() -> None:
    text = "# top\nstages:\n  a:  # keep\n    cmd: x\n\nartifacts:\n  old:\n    path: p\n\n# tail\nplots:\n  - f\n"
    block = block_text({"new-one": {"type": "model", "path": "m.pt"}})
    written = replace_block(text, block)
    assert written.startswith("# top\nstages:\n  a:  # keep\n    cmd: x\n\n" + block)
    assert written.endswith("\n# tail\nplots:\n  - f\n") and "old:" not in written
    assert replace_block(written, block) == written
    assert yaml.safe_load(written)["artifacts"] == {"new-one": {"type": "model", "path": "m.pt"}}
    appended = replace_block("stages: {}\n", block)
    assert appended == "stages: {}\n\n" + block


@pytest.mark.parametrize(("uri", "repo", "name", "version", "stage"), [
    ("dvc+https://github.com/org/repo.git#sample-sam-full-automated-vit-t-dec-vanilla@prod",
     "https://github.com/org/repo.git", "sample-sam-full-automated-vit-t-dec-vanilla", None, "prod"),
    ("dvc+git@github.com:org/repo.git#pretrain-sslsam-vit-t@v1.2.3", "git@github.com:org/repo.git",
     "pretrain-sslsam-vit-t", "v1.2.3", None),
    ("dvc+ssh://git@host:2222/org/repo.git#a-b@staging", "ssh://git@host:2222/org/repo.git", "a-b", None, "staging"),
    ("dvc+file:///srv/medseg#a@v0.1.0", "file:///srv/medseg", "a", "v0.1.0", None),
])
def test_model_uris(uri: str, repo: str, name: str, version: str | None, stage: str | None) -> None:
    parsed = parse_uri(uri)
    assert (parsed.repo, parsed.name, parsed.version, parsed.stage) == (repo, name, version, stage)


def test_credentials_never_leave_the_uri() -> None:
    parsed = parse_uri("dvc+https://user:s3cret@git.example.org/org/repo.git#a@prod")
    assert parsed.repo.startswith("https://user:s3cret@") and "s3cret" not in parsed.shown


@pytest.mark.parametrize(("uri", "message"), [
    ("https://github.com/org/repo.git#a@prod", "not a model URI"),
    ("dvc+https://github.com/org/repo.git#a", "not a model URI"),
    ("dvc+https://github.com/org/repo.git#a@prod@v1.0.0", "not a model URI"),
    ("dvc+ext::sh -c evil#a@prod", "not a git URL"),
    ("dvc+-oProxyCommand=evil@host:x#a@prod", "not a git URL"),
    ("dvc+/srv/medseg#a@prod", "not a git URL"),
    ("dvc+file:///srv/../etc#a@prod", "not a git URL"),
    ("dvc+https://h/r.git#Sample_Model@prod", "not a valid artifact name"),
    ("dvc+https://h/r.git#a@v1.2", "neither a version"),
    ("dvc+https://h/r.git#a@Prod", "neither a version"),
])
def test_bad_uris_are_one_line(uri: str, message: str) -> None:
    with pytest.raises(MedsegError, match=message) as caught:
        parse_uri(uri)
    assert "\n" not in caught.value.one_line()


def test_a_folder_of_other_files_is_not_a_destination(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "notes.txt").write_text("mine")
    with pytest.raises(MedsegError, match="did not write"):
        fetch_model("dvc+file:///nowhere#a@prod", tmp_path / "dest")
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["notes.txt"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def _repo_with_metrics(root: Path, metrics: dict | None) -> Committed:
    """A commit declaring ``a`` (path m/model.pt, pinned by m/model.pt.dvc) with ``metrics`` at meta.metrics."""
    root.mkdir()
    _git(root, "init", "-q")
    (root / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": {"a": {
        "type": "model", "path": "m/model.pt", "meta": {"kind": "finetuned", "metrics": "r/metrics.json"}}}}))
    (root / "m").mkdir()
    (root / "m/model.pt.dvc").write_text(yaml.safe_dump({"outs": [{"md5": "0" * 32, "path": "model.pt"}]}))
    if metrics is not None:
        (root / "r").mkdir()
        (root / "r/metrics.json").write_text(json.dumps(metrics))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "x")
    return committed(root, _git(root, "rev-parse", "HEAD"), "a")


def _metrics(**flags: object) -> dict:
    return {"dice_mean": 0.8, "dataset": "mri_heart", "random_init": False, "synthetic_data": False,
            "provenance": {"inputs": {"model": {"dvc_hash": "0" * 32}}}, **flags}


def test_promotion_gate(tmp_path: Path) -> None:
    real = _repo_with_metrics(tmp_path / "real", _metrics())
    assert check_promotable(tmp_path / "real", real, "prod", SETTINGS)["dice_mean"] == 0.8
    for folder, metrics, stage, message in (
            ("none", None, "staging", "no metrics"),
            ("stale", _metrics(provenance={"inputs": {"model": {"dvc_hash": "1" * 32}}}), "staging", "not of this"),
            ("random", _metrics(random_init=True), "prod", "random_init is true"),
            ("unknown", _metrics(synthetic_data=None, dataset="sample"), "prod", "synthetic_data is true"),
            ("unrecorded", _metrics(random_init=None), "prod", "random_init is not recorded")):
        artifact = _repo_with_metrics(tmp_path / folder, metrics)
        with pytest.raises(MedsegError, match=message):
            check_promotable(tmp_path / folder, artifact, stage, SETTINGS)
    synthetic = _repo_with_metrics(tmp_path / "synthetic", _metrics(synthetic_data=True))
    assert check_promotable(tmp_path / "synthetic", synthetic, "staging", SETTINGS)  # only guarded stages refuse


def test_a_fetched_model_must_be_the_declared_run(tmp_path: Path) -> None:
    network = parse_baseline("unet", {"channels": [4, 8], "strides": [2], "num_res_units": 0})
    path = tmp_path / "model.pt"
    export_checkpoint(BaselineSegmenter(network, 64, 2), path, baseline_spec(network),
                      {"dataset": "sample", "strategy": "unet", "init": "scratch", "profile": "full"})
    meta = {"kind": "baseline", "dataset": "sample", "init": "scratch", "profile": "full", "mode": "automated",
            "strategy": "unet"}
    artifact = Committed("a", "c" * 40, "m/model.pt", (), meta, dvc_hash(path), "dvc.lock")
    assert verify(path, artifact)["strategy"] == "unet"
    with pytest.raises(MedsegError, match="profile 'full' \\(declared 'fewshot'\\)"):
        verify(path, Committed("a", "c" * 40, "m/model.pt", (), {**meta, "profile": "fewshot"}, artifact.md5, "x"))
    with pytest.raises(MedsegError, match="hashes to"):
        verify(path, Committed("a", "c" * 40, "m/model.pt", (), meta, "0" * 32, "dvc.lock"))
    torch.save({"format": "pickled"}, tmp_path / "bad.pt")
    with pytest.raises(MedsegError, match=r"not a medseg\.sam/1 checkpoint"):
        verify(tmp_path / "bad.pt", Committed("a", "c" * 40, "p", (), meta, dvc_hash(tmp_path / "bad.pt"), "x"))


@pytest.mark.parametrize(("override", "message"), [
    ({"stages": ["Prod"]}, "not a stage name"),
    ({"guarded_stages": ["release"]}, "not one of stages"),
    ({"stages": ["prod", "prod"], "guarded_stages": []}, "listed twice"),
    ({"default_bump": "huge"}, "default_bump"),
    ({"stage": ["prod"]}, "unknown setting"),
])
def test_registry_settings_are_checked(override: dict, message: str, tmp_path: Path) -> None:
    params = tiny_params()
    params["registry"].update(override)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(MedsegError, match=message):
        load_params(tmp_path / "params.yaml")


def test_a_fetched_encoder_must_be_the_declared_one(tmp_path: Path) -> None:
    path = tmp_path / "encoder.pt"
    torch.save({"format": "medseg.encoder/1", "backbone": "vit_t", "metadata": {"init": "sslsam", "random_init": True},
                "state_dict": {"patch_embed.weight": torch.zeros(2, 2)}}, path)
    meta = {"kind": "encoder", "init": "sslsam", "backbone": "vit_t"}
    assert verify(path, Committed("e", "c" * 40, "p", (), meta, dvc_hash(path), "x"))["random_init"] is True
    with pytest.raises(MedsegError, match="backbone 'vit_t' \\(declared 'vit_b'\\)"):
        verify(path, Committed("e", "c" * 40, "p", (), {**meta, "backbone": "vit_b"}, dvc_hash(path), "x"))
    torch.save({"format": "medseg.encoder/1", "state_dict": {"w": torch.tensor([float("nan")])}}, path)
    with pytest.raises(MedsegError, match="NaN"):
        verify(path, Committed("e", "c" * 40, "p", (), meta, dvc_hash(path), "x"))


def test_the_sample_alias_is_synthetic_when_a_record_does_not_say() -> None:
    from medseg.provenance import synthetic_data

    assert synthetic_data({"dataset": "sample"}) is True
    assert synthetic_data({"datasets": ["busi", "sample"]}) is True
    assert synthetic_data({"dataset": "sample", "synthetic_data": False}) is False  # a recorded flag wins
    assert synthetic_data({"dataset": "busi"}) is None  # unknown, not "real"
