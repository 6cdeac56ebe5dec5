"""Reliability battery, `medseg finetune` outputs: checked before training, locked while training,
written only at the end, and a failed publish leaves the run resumable."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from battery import one_line, snapshot

from medseg.locking import exclusive_lock


def _finetune(run_step, data: Path, out: Path, params: Path, *extra: str):
    return run_step("finetune", "--dataset", "sample", "--strategy", "vit_t_dec_vanilla", "--data", data,
                    "--out", out, "--params", params, *extra)


def test_finetune_output_inside_the_data_is_refused_before_training(run_step, ingested_sample: Path,
                                                                    params: Path, tmp_path: Path) -> None:
    data = tmp_path / "processed"
    shutil.copytree(ingested_sample, data)
    before = snapshot(data)
    one_line(_finetune(run_step, data, data / "model", params), "lies inside the input")
    assert snapshot(data) == before and not (tmp_path / "work").exists()


def test_finetune_output_inside_its_work_directory_is_refused(run_step, ingested_sample: Path, params: Path,
                                                              tmp_path: Path) -> None:
    one_line(_finetune(run_step, ingested_sample, tmp_path / "work" / "model", params), "lies inside the input")


def test_finetune_while_another_run_writes_the_output_is_refused(run_step, ingested_sample: Path, params: Path,
                                                                 tmp_path: Path) -> None:
    with exclusive_lock(tmp_path / "model"):
        one_line(_finetune(run_step, ingested_sample, tmp_path / "model", params), "in use by another medseg run")
    assert not (tmp_path / "model").exists()


def test_disk_full_at_publish_keeps_the_run_resumable(run_step, ingested_sample: Path, params: Path,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model" / "model.pt"))

    monkeypatch.setattr(shutil, "copy2", full)
    one_line(_finetune(run_step, ingested_sample, tmp_path / "model", params), "No space left on device")
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model.tmp-*"))
    monkeypatch.undo()
    assert _finetune(run_step, ingested_sample, tmp_path / "model", params, "--resume").code == 0
    assert (tmp_path / "model" / "model.pt").is_file()
    assert not (tmp_path / "work/sample/sam/full/automated/vit_t_dec_vanilla").exists()
