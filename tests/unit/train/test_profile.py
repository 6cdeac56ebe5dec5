"""Settings profiles: `medseg profile --name study|demo` rewrites params.yaml values in place."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from medseg.errors import MedsegError
from medseg.params import load_params
from medseg.params_schema import validated
from medseg.profiles import apply_profile, dvc_command, read_profile
from medseg.train.config import TrainConfig

MEDSEG = str(Path(sys.executable).parent / "medseg")


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A copy of the repository's params.yaml and profiles/."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path


def _study_values(params: dict) -> dict:
    config = TrainConfig.from_params(params, strategy="vit_t_dec_vanilla")
    augment = config.augment
    return {"image_size": params["ingest"]["image_size"], "max_epochs": config.max_epochs,
            "patience": config.early_stopping_patience, "warmup": config.warmup_iters,
            "schedule": config.lr_schedule, "batch": config.batch_size, "lr": config.lr,
            "weight_decay": config.weight_decay,
            "augment": (augment.enabled, augment.preset, augment.equalize_probability, augment.brightness,
                        augment.contrast),
            "box_preset": config.prompts.box_preset}


STUDY = {"image_size": 1024, "max_epochs": 200, "patience": 20, "warmup": 200, "schedule": "poly", "batch": 4,
         "lr": 1e-4, "weight_decay": 0.1, "augment": (True, "paper", 0.1, 0.3, 0.3), "box_preset": "paper"}


def test_study_profile_resolves_to_the_papers_recipe(workspace: Path) -> None:
    result = subprocess.run([MEDSEG, "profile", "--name", "study", "--params", str(workspace / "params.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "ingest.image_size: 256 -> 1024" in result.stdout
    assert _study_values(load_params(workspace / "params.yaml")) == STUDY  # through the schema


def test_dvc_command_sets_the_same_values(workspace: Path) -> None:
    argv = shlex.split(dvc_command("study", workspace / "params.yaml"))
    assert argv[:3] == ["dvc", "exp", "run"] and argv[3::2] == ["-S"] * len(argv[3::2])
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    for assignment in argv[4::2]:
        key, value = assignment.split("=", 1)
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)  # how DVC parses -S values
    assert _study_values(validated(params, "dvc")) == STUDY


def test_switching_back_to_demo_restores_the_file_byte_for_byte(workspace: Path) -> None:
    original = (workspace / "params.yaml").read_text()
    _, changes = apply_profile("study", workspace / "params.yaml")
    studied = (workspace / "params.yaml").read_text()
    assert len(changes) >= 5 and studied != original
    assert [line for line in studied.splitlines() if line.lstrip().startswith("#")] == [
        line for line in original.splitlines() if line.lstrip().startswith("#")]
    image_line = next(line for line in studied.splitlines() if line.startswith("  image_size:"))
    assert image_line.index("#") == next(
        line for line in original.splitlines() if line.startswith("  image_size:")).index("#")  # comment column kept
    assert apply_profile("study", workspace / "params.yaml")[1] == []  # already applied: nothing to change
    apply_profile("demo", workspace / "params.yaml")
    assert (workspace / "params.yaml").read_text() == original


def test_committed_params_are_the_demo_profile_and_demo_undoes_every_profile() -> None:
    demo = {override.key: override.value for override in read_profile(REPO / "profiles/demo.yaml")}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key, value in demo.items():
        node = params
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    for path in (REPO / "profiles").glob("*.yaml"):
        assert {o.key for o in read_profile(path)} <= set(demo), path.name


def _untouched(workspace: Path, call: object, match: str) -> None:
    before = (workspace / "params.yaml").read_text()
    with pytest.raises(MedsegError, match=match):
        call()  # type: ignore[operator]
    assert (workspace / "params.yaml").read_text() == before


def test_refusals_name_the_problem_and_write_nothing(workspace: Path) -> None:
    params = workspace / "params.yaml"
    (workspace / "profiles/typo.yaml").write_text("finetune:\n  max_epoch: 3\n")
    _untouched(workspace, lambda: apply_profile("typo", params), r"finetune\.max_epoch: the profile sets a key")
    (workspace / "profiles/bad.yaml").write_text("finetune:\n  lr_schedule: cosine\n")
    _untouched(workspace, lambda: apply_profile("bad", params), r"params\.yaml: finetune\.lr_schedule")
    (workspace / "profiles/block.yaml").write_text("finetune:\n  modes:\n    - box\n")
    _untouched(workspace, lambda: apply_profile("block", params), r"finetune\.modes: write the value on one line")
    _untouched(workspace, lambda: apply_profile("missing", params), r"no such profile \(known in .*demo, study")
    _untouched(workspace, lambda: apply_profile("../study", params), "--name")
    other = workspace / "other.yaml"
    shutil.copy(params, other)
    with pytest.raises(MedsegError, match=r"only a regular file named params\.yaml"):
        apply_profile("study", other)
    assert other.read_text() == params.read_text()
    link = workspace / "linked" / "params.yaml"
    link.parent.mkdir()
    link.symlink_to(params)
    with pytest.raises(MedsegError, match=r"only a regular file named params\.yaml"):
        apply_profile(str(workspace / "profiles/study.yaml"), link)


def test_a_profile_may_be_any_yaml_file_of_overrides(workspace: Path) -> None:
    custom = workspace / "mine.yaml"
    custom.write_text("finetune:\n  lr_schedule: poly\n  prompts: {box_preset: released_code}\n"
                      "  augment:\n    crop_scale: [0.6, 1.4]\n")
    _, changes = apply_profile(str(custom), workspace / "params.yaml")
    assert changes == ["finetune.lr_schedule: constant -> poly",
                       "finetune.augment.crop_scale: [0.5, 1.5] -> [0.6, 1.4]",
                       "finetune.prompts.box_preset: paper -> released_code"]
    params = load_params(workspace / "params.yaml")
    assert params["finetune"]["augment"]["crop_scale"] == (0.6, 1.4)
    assert "crop_scale: [0.6, 1.4]      # released_code" in (workspace / "params.yaml").read_text()


@pytest.mark.parametrize(("section", "key", "value"), [
    ("finetune", "lr_schedule", "cosine"), ("augment", "preset", "fancy"), ("augment", "crop_scale", [1.5, 0.5]),
    ("augment", "max_rotation_deg", 360), ("prompts", "box_preset", "sam"), ("prompts", "largest_regions", 0)])
def test_new_settings_are_checked_by_the_schema_naming_the_key(section: str, key: str, value: object) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    node = params["finetune"] if section == "finetune" else params["finetune"][section]
    node[key] = value
    dotted = f"finetune.{key}" if section == "finetune" else f"finetune.{section}.{key}"
    with pytest.raises(MedsegError, match=rf"^params\.yaml: {dotted.replace('.', '[.]')}(\.\d)?: "):
        validated(params, "params.yaml")


def test_a_profile_that_changes_the_models_says_the_artifacts_are_stale(workspace: Path) -> None:
    from medseg.profiles import profile_command

    shutil.copy(REPO / "dvc.yaml", workspace / "dvc.yaml")
    assert "medseg artifacts --write" in profile_command("study", workspace / "params.yaml")
    assert "artifacts" not in profile_command("demo", workspace / "params.yaml")  # back to what dvc.yaml declares
