"""Reliability battery, params.yaml: every bad setting is one line naming the file and the key, exit 2,
before any step does work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from battery import one_line, write_params

from medseg.data.ingest import _workers
from medseg.errors import MedsegError

Edit = Callable[[dict[str, Any]], None]


def _set(section: str, key: str, value: Any) -> Edit:
    return lambda params: params[section].__setitem__(key, value)


CASES: dict[str, tuple[Edit, str]] = {
    "max_epochs -1": (_set("finetune", "max_epochs", -1), "finetune.max_epochs"),
    "max_epochs 0": (_set("finetune", "max_epochs", 0), "finetune.max_epochs"),
    "lr abc": (_set("finetune", "lr", "abc"), "finetune.lr"),
    "lr -1": (_set("finetune", "lr", -1), "finetune.lr"),
    "batch_size 0": (_set("finetune", "batch_size", 0), "finetune.batch_size"),
    "finetune null": (lambda p: p.__setitem__("finetune", None), "finetune"),
    "split_fractions with two entries": (_set("ingest", "split_fractions", [0.8, 0.2]), "ingest.split_fractions"),
    "image_size 0": (_set("ingest", "image_size", 0), "ingest.image_size"),
    "image_size negative": (_set("ingest", "image_size", -256), "ingest.image_size"),
    "negative split fraction": (_set("ingest", "split_fractions", [0.9, -0.1, 0.2]), "ingest.split_fractions"),
    "split fractions not summing to 1": (_set("ingest", "split_fractions", [0.7, 0.2, 0.2]), "sum to 1"),
    "reversed intensity window": (_set("ingest", "intensity_window", [240, -160]), "ingest.intensity_window"),
    "reversed window in an override": (_set("ingest", "overrides", {"sample": {"intensity_window": [5, 1]}}),
                                       "ingest.overrides.sample.intensity_window"),
    "on_error ignore": (_set("ingest", "on_error", "ignore"), "ingest.on_error"),
    "misspelled key": (_set("finetune", "max_epoch", 3), "finetune.max_epoch: unknown setting"),
    "unknown strategy": (_set("finetune", "strategies", ["vit_q_dec_vanilla"]), "finetune.strategies"),
    "dataset name with a path": (_set("ingest", "datasets", ["../victim"]), "ingest.datasets.0"),
    "NaN learning rate": (_set("finetune", "lr", float("nan")), "finetune.lr"),
    "volume limit beyond the memory budget": (_set("ingest", "max_voxels", 2**31), "ingest.memory_limit_mb"),
    "memory budget beyond the Kubeflow task's": (_set("ingest", "memory_limit_mb", 16_000),
                                                 "kubeflow.resources.memory_limit"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_setting_is_one_line_naming_file_and_key(case: str, run_step, tmp_path: Path) -> None:
    edit, key = CASES[case]
    params = write_params(tmp_path / "params.yaml", edit)
    outcome = run_step("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data",
                       tmp_path / "no-data", "--out", tmp_path / "out", "--params", params)
    one_line(outcome, str(params), key)
    assert not (tmp_path / "out").exists()


def test_params_file_that_is_not_utf8_is_one_line(run_step, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_bytes(b"seed: 1\nsample: {note: \xff\xfe}\n")
    one_line(run_step("sample", "--out", tmp_path / "raw", "--params", params), str(params), "not valid YAML")


def test_ingest_workers_shrink_to_fit_the_memory_budget(capsys: pytest.CaptureFixture[str]) -> None:
    settings = {"workers": 4, "max_voxels": 2**27, "memory_limit_mb": 6000}  # 2560 MB each: two fit
    assert _workers(settings) == 2
    assert "2 worker(s) instead of 4" in capsys.readouterr().out
    assert _workers({**settings, "memory_limit_mb": 20_000}) == 4


def test_ingest_refuses_a_volume_limit_no_worker_can_hold() -> None:
    with pytest.raises(MedsegError, match=r"ingest\.max_voxels: .* more than ingest\.memory_limit_mb"):
        _workers({"workers": 1, "max_voxels": 2**28, "memory_limit_mb": 4096})


def test_listing_sample_without_its_stage_is_one_line(run_step, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", lambda p: p["sample"].update(datasets=[]))
    one_line(run_step("sample", "--out", tmp_path / "raw", "--params", params), "list sample in both or in neither")


def test_dropping_the_demo_from_ingest_alone_says_to_drop_its_stage_too(run_step, tmp_path: Path) -> None:
    params = write_params(tmp_path / "params.yaml", lambda p: p["ingest"].update(datasets=["mri_prostate"]))
    one_line(run_step("sample", "--out", tmp_path / "raw", "--params", params), "sample.datasets: [] drops")
