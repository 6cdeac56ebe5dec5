"""Reliability battery, `medseg sample`: it never replaces anything but an earlier sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from battery import one_line, snapshot, write_params

from medseg.locking import exclusive_lock
from medseg.outputs import MARKER


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a user's params.yaml and notes."""
    folder = tmp_path / "project"
    folder.mkdir()
    write_params(folder / "params.yaml")
    (folder / "notes.txt").write_text("keep me\n")
    monkeypatch.chdir(folder)
    return folder


def test_sample_out_dot_deletes_nothing(run_step, user_folder: Path) -> None:
    before = snapshot(user_folder)
    line = one_line(run_step("sample", "--out", "."), "output would replace the working directory")
    assert "sample" in line
    assert snapshot(user_folder) == before


def test_sample_out_repository_root_is_refused(run_step, user_folder: Path) -> None:
    (user_folder / "dvc.yaml").write_text("stages: {}\n")
    os.chdir(user_folder.parent)  # run from outside the repository, aimed at it
    before = snapshot(user_folder)
    one_line(run_step("sample", "--out", "project", "--params", user_folder / "params.yaml"), "a repository root")
    assert snapshot(user_folder) == before


def test_sample_over_a_folder_of_user_files_is_refused(run_step, user_folder: Path) -> None:
    (user_folder / "scans").mkdir()
    (user_folder / "scans" / "ct.nii.gz").write_bytes(b"patient data")
    one_line(run_step("sample", "--out", "scans"), "scans", "files `medseg sample` did not write (e.g. ct.nii.gz)")
    assert (user_folder / "scans" / "ct.nii.gz").read_bytes() == b"patient data"


def test_sample_replaces_its_own_earlier_output(run_step, user_folder: Path) -> None:
    assert run_step("sample", "--out", "raw").code == 0
    (user_folder / "raw" / "imagesTr" / "stray.txt").write_text("from an older run\n")
    assert run_step("sample", "--out", "raw").code == 0
    assert not (user_folder / "raw" / "imagesTr" / "stray.txt").exists()
    assert (user_folder / "raw" / MARKER).is_file()


def test_sample_inside_another_steps_output_is_refused(run_step, user_folder: Path) -> None:
    (user_folder / "processed").mkdir()
    (user_folder / "processed" / MARKER).write_text('{"step": "ingest"}\n')
    one_line(run_step("sample", "--out", "processed/raw"), "inside the output of `medseg ingest`")
    assert not (user_folder / "processed" / "raw").exists()


def test_sample_while_another_run_writes_the_same_output_is_refused(run_step, user_folder: Path) -> None:
    with exclusive_lock(user_folder / "raw"):
        one_line(run_step("sample", "--out", "raw"), "in use by another medseg run")
    assert not (user_folder / "raw").exists()
    assert run_step("sample", "--out", "raw").code == 0  # the lock is gone with its holder
    assert not list(user_folder.glob(".raw.lock"))


def test_sample_cleans_temporary_folders_an_interrupted_run_left(run_step, user_folder: Path) -> None:
    stale = user_folder / ".raw.tmp-abc123"
    (stale / "imagesTr").mkdir(parents=True)
    (user_folder / ".other.tmp-keep").mkdir()
    assert run_step("sample", "--out", "raw").code == 0
    assert not stale.exists()
    assert (user_folder / ".other.tmp-keep").exists()  # not this output's


def test_sample_replaces_an_unmarked_earlier_sample_and_keeps_its_gitignore(run_step, user_folder: Path) -> None:
    old = user_folder / "raw"
    (old / "imagesTr").mkdir(parents=True)
    (old / "imagesTr" / "phantom_001.nii.gz").write_bytes(b"older version")
    (old / "dataset.json").write_text("{}")
    (old / ".gitignore").write_text("/reports\n")
    assert run_step("sample", "--out", "raw").code == 0
    assert (old / ".gitignore").read_text() == "/reports\n"
    assert (old / "imagesTr" / "phantom_001.nii.gz").read_bytes() != b"older version"
