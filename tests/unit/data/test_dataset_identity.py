"""Ingest refuses data that is not the dataset its alias names: the synthetic phantom only as a synthetic
entry (``sample``), nothing else under one, and an MSD task only under the alias whose label map it carries."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from layouts import LAYOUTS

from helpers import tiny_params
from medseg.cli import main
from medseg.data.adapters import paired_volumes
from medseg.data.identity import synthetic_mark
from medseg.data.ingest import ingest_dataset
from medseg.data.sample import SYNTHETIC_FILE, SYNTHETIC_KEY
from medseg.errors import MedsegError

pytest_plugins = ["data_fixtures"]


def _params() -> dict[str, Any]:
    return {**tiny_params()["ingest"], "image_size": 16, "workers": 1}


def _refused(alias: str, raw: Path, out: Path) -> MedsegError:
    with pytest.raises(MedsegError) as caught:
        ingest_dataset(alias, raw, out, _params(), seed=0)
    assert "\n" not in caught.value.one_line() and not out.exists()
    return caught.value


def _older_phantom(raw: Path) -> None:
    """A phantom written before dataset.json had its field: the notice and SYNTHETIC.txt still mark it."""
    meta = json.loads((raw / "dataset.json").read_text())
    del meta[SYNTHETIC_KEY]
    (raw / "dataset.json").write_text(json.dumps(meta))


def _notice_only(raw: Path) -> None:
    _older_phantom(raw)
    (raw / SYNTHETIC_FILE).unlink()


def _nested(raw: Path) -> None:
    """The phantom moved into a task folder one level below the root."""
    task = raw / "Task04_Hippocampus"
    task.mkdir()
    for item in list(raw.iterdir()):
        if item != task and not item.name.startswith("."):
            shutil.move(item, task / item.name)


PHANTOM_FORMS: dict[str, Callable[[Path], None]] = {
    "as written": lambda raw: None, "older phantom": _older_phantom, "notice only": _notice_only,
    "one folder below": _nested}


@pytest.mark.parametrize("form", sorted(PHANTOM_FORMS))
def test_phantom_under_a_real_alias_fails_through_the_cli(form: str, raw_copy: Path, params_file: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    PHANTOM_FORMS[form](raw_copy)
    out = tmp_path / "out"
    code = main(["ingest", "--dataset", "mri_hippocampus", "--raw", str(raw_copy), "--out", str(out),
                 "--params", str(params_file)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(errors) == 1, errors
    assert str(raw_copy) in errors[0] and "synthetic phantom" in errors[0] and "`sample`" in errors[0], errors
    assert "mri_hippocampus" in errors[0] and not out.exists()


def test_phantom_carries_its_mark_and_ingests_as_sample(phantom_raw: Path, ingested_sample: Path) -> None:
    assert json.loads((phantom_raw / "dataset.json").read_text())[SYNTHETIC_KEY] is True
    assert synthetic_mark(phantom_raw) == phantom_raw / "dataset.json"
    assert json.loads((ingested_sample / "ingest.json").read_text())["synthetic"] is True


def test_unmarked_msd_data_under_sample_fails(tmp_path: Path, write_msd: Callable[..., Path]) -> None:
    label = np.zeros((8, 8, 2), dtype=np.uint8)
    label[2:5, 2:5, :] = 1
    raw = write_msd(tmp_path / "raw", [("case_001", np.ones((8, 8, 2), np.float32), label)])
    assert synthetic_mark(raw) is None
    error = _refused("sample", raw, tmp_path / "out")
    assert error.path == str(raw) and "is not the synthetic phantom" in error.problem, str(error)
    assert "'sample'" in error.problem
    assert ingest_dataset("hand", raw, tmp_path / "hand", {**_params(), "extra_registries": [
        str(Path(__file__).parent / "registry")]}, seed=0)["synthetic"] is False


@pytest.mark.parametrize(("task", "alias", "words"), [
    ("mri_heart", "ct_colon", ["{0: background, 1: left atrium}", "{0: background, 1: colon cancer primaries}"]),
    ("mri_hippocampus", "mri_heart", ["{0: background, 1: Anterior, 2: Posterior}", "settings.msd_labels"]),
    ("ct_pancreas", "ct_hepatic_vessel", ["{0: background, 1: pancreas, 2: cancer}", "1: Vessel, 2: Tumour"]),
])
def test_msd_task_under_another_tasks_alias_fails_on_its_label_map(task: str, alias: str, words: list[str],
                                                                     tmp_path: Path) -> None:
    LAYOUTS[task](tmp_path / "raw")
    error = _refused(alias, tmp_path / "raw", tmp_path / "out")
    assert error.path is not None and error.path.endswith("dataset.json"), str(error)
    assert f"dataset '{alias}'" in error.problem and all(word in error.problem for word in words), str(error)


def test_unmarked_phantom_under_a_real_alias_fails_on_its_label_map(raw_copy: Path, tmp_path: Path) -> None:
    _notice_only(raw_copy)
    meta = json.loads((raw_copy / "dataset.json").read_text())
    (raw_copy / "dataset.json").write_text(json.dumps({**meta, "description": "CT"}))
    error = _refused("mri_hippocampus", raw_copy, tmp_path / "out")
    assert error.path == str(raw_copy / "dataset.json") and "{0: background, 1: lesion}" in error.problem


def test_msd_labels_setting_is_checked() -> None:
    labels = {"msd": True, "msd_labels": {0: "background", 1: "Anterior"}}
    paired_volumes.check_settings(labels)
    with pytest.raises(MedsegError, match="msd_labels goes only with msd: true"):
        paired_volumes.check_settings({"images": "*.nii", "label": {"regex": "a", "replace": "b"},
                                       "msd_labels": labels["msd_labels"]})
    with pytest.raises(MedsegError, match="msd_labels must map class numbers to names"):
        paired_volumes.check_settings({"msd": True, "msd_labels": {"one": "lesion"}})
