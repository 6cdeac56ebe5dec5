"""Registry entries under `dvc repro`: the `datasets` stage (`medseg datasets --check-params`) runs before
every ingest, names a wrong alias or a missing download in one line, and writes the entry each ingest
reads, on which the ingest stage depends (so editing an entry re-runs that dataset's ingest only)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, tiny_params
from medseg.cli import build_parser, main
from medseg.data.registry import CUSTOM_REGISTRY

STAGES: dict[str, Any] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
MINI = (REPO / "tests/unit/data/registry/hand.yaml").read_text()


def _argv() -> list[str]:
    return shlex.split(STAGES["datasets"]["cmd"])


def test_datasets_stage_checks_params_before_every_ingest() -> None:
    argv = _argv()
    args = build_parser().parse_args(argv[1:])
    assert argv[:2] == ["medseg", "datasets"] and args.check_params
    assert args.raw == "data/raw"
    assert list(STAGES).index("datasets") < list(STAGES).index("ingest")
    assert STAGES["datasets"]["outs"] == [args.out]
    assert {"ingest.datasets", "ingest.extra_registries"} <= set(STAGES["datasets"]["params"])


def test_datasets_stage_depends_on_built_in_and_custom_entries() -> None:
    deps = STAGES["datasets"]["deps"]
    assert CUSTOM_REGISTRY in deps and (REPO / CUSTOM_REGISTRY).is_dir()
    assert any((REPO / "medseg/data/registry").is_relative_to(REPO / dep) for dep in deps)
    assert not list((REPO / CUSTOM_REGISTRY).glob("*.yaml"))  # ships empty of entries (a README only)


def test_each_ingest_depends_on_its_own_entry_and_raw_folder() -> None:
    out = build_parser().parse_args(_argv()[1:]).out
    deps = STAGES["ingest"]["deps"]
    assert f"{out}/${{item.dataset}}.json" in deps
    assert "data/raw/${item.dataset}" in deps
    assert not any(dep == out for dep in deps)  # not the whole folder: adding a dataset re-runs no other


def _params(tmp_path: Path, datasets: list[str], extra: list[str] | None = None) -> Path:
    params = tiny_params()
    params["ingest"]["datasets"] = datasets
    params["sample"]["datasets"] = ["sample"] if "sample" in datasets else []
    params["ingest"]["extra_registries"] = extra or []
    for step in ("pretrain_mae", "pretrain_sup"):  # pretraining reads ingested datasets only
        params[step]["datasets"] = datasets
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _check_params(params: Path, raw: Path, out: Path | None, capsys: pytest.CaptureFixture[str]
                  ) -> tuple[int, str, str]:
    argv = ["datasets", "--check-params", "--params", str(params), "--raw", str(raw)]
    code = main([*argv, *(["--out", str(out)] if out else [])])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_unknown_alias_is_one_line_naming_it_and_the_known_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = _params(tmp_path, ["sample", "busi"])
    code, out, err = _check_params(params, tmp_path / "raw", tmp_path / "datasets", capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert f"{params}: ingest.datasets: 'busi' is not registered; known: " in err
    assert "us_breast" in err and "Custom dataset entry" in err
    assert not (tmp_path / "datasets").exists()


def test_pretraining_on_datasets_not_ingested_is_refused_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params_file = _params(tmp_path, ["sample"])
    params = yaml.safe_load(params_file.read_text())
    params["pretrain_sup"]["datasets"] = ["sample", "mri_knee"]
    params_file.write_text(yaml.safe_dump(params))
    code, out, err = _check_params(params_file, tmp_path / "raw", tmp_path / "datasets", capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert "pretrain_sup.datasets: mri_knee not in ingest.datasets" in err and "pretrain_sup.backbones: []" in err
    assert not (tmp_path / "datasets").exists()
    params["pretrain_sup"]["backbones"], params["finetune"]["pretrained"]["inits"] = [], ["sslsam"]  # not run: fine
    params_file.write_text(yaml.safe_dump(params))
    code, _, _ = _check_params(params_file, tmp_path / "raw", None, capsys)
    assert code == 0
    assert {"pretrain_mae.datasets", "pretrain_sup.backbones"} <= set(STAGES["datasets"]["params"])


def test_missing_raw_folder_says_where_to_get_it_and_how_to_add_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    code, _, err = _check_params(_params(tmp_path, ["sample", "mri_hippocampus"]), raw, None, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "raw folder of dataset 'mri_hippocampus' not found" in err and "medicaldecathlon.com" in err
    assert f"dvc add {raw / 'mri_hippocampus'}" in err
    (raw / "mri_hippocampus.dvc").write_text("outs: []\n")  # tracked but not pulled
    code, _, err = _check_params(_params(tmp_path, ["mri_hippocampus"]), raw, None, capsys)
    assert code == 2 and f"dvc pull {raw / 'mri_hippocampus.dvc'}" in err


def test_entries_written_per_dataset_change_only_with_their_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry, raw, out = tmp_path / "registry", tmp_path / "raw", tmp_path / "datasets"
    registry.mkdir()
    (raw / "hand").mkdir(parents=True)  # sample is synthetic: `medseg sample` writes its raw folder later
    (registry / "hand.yaml").write_text(MINI)
    params = _params(tmp_path, ["sample", "hand"], [str(registry)])
    code, stdout, _ = _check_params(params, raw, out, capsys)
    assert code == 0 and stdout.startswith("datasets: sample, hand registered")
    first = {name: (out / f"{name}.json").read_bytes() for name in ("sample", "hand")}
    assert json.loads(first["hand"])["labels"] == {"0": "background", "1": "lesion"}
    (registry / "hand.yaml").write_text(MINI + "mask_values: {threshold: 0}\n")
    assert _check_params(params, raw, out, capsys)[0] == 0
    assert (out / "sample.json").read_bytes() == first["sample"]
    assert json.loads((out / "hand.json").read_text())["mask_values"] == {"threshold": 0}


def test_registry_folder_outside_registry_is_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "entries"
    elsewhere.mkdir()
    (elsewhere / "hand.yaml").write_text(MINI)
    (tmp_path / "raw" / "hand").mkdir(parents=True)
    params = _params(tmp_path, ["hand"], [str(elsewhere)])
    code, _, err = _check_params(params, tmp_path / "raw", tmp_path / "datasets", capsys)
    assert code == 0 and f"{elsewhere} is not under registry/" in err
    (tmp_path / "registry").mkdir()
    (elsewhere / "hand.yaml").rename(tmp_path / "registry/hand.yaml")
    params = _params(tmp_path, ["hand"], ["registry"])
    assert _check_params(params, tmp_path / "raw", tmp_path / "datasets", capsys)[2] == ""


@pytest.mark.parametrize(("choice", "expected"), [
    ({"sample": ["tumour"]}, "finetune.classes.sample: ['tumour'] not among the dataset's classes ['lesion']"),
    ({"us_breast": ["lesion"]}, "finetune.classes.us_breast: 'us_breast' is not in ingest.datasets"),
])
def test_class_choices_are_checked_before_ingest(choice: dict, expected: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    params = tiny_params()
    params["finetune"]["classes"] = choice
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    code, _, err = _check_params(path, tmp_path / "raw", None, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and expected in err
