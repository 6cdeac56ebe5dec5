"""Reliability battery, `medseg ingest`: outputs never overlap inputs, failures leave nothing behind."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import numpy as np
import pytest
from battery import one_line, snapshot

from medseg.outputs import MARKER


@pytest.fixture
def raw(phantom_raw: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(phantom_raw, tmp_path / "raw"))


def _ingest(run_step, raw: Path, out: Path, params: Path):
    return run_step("ingest", "--dataset", "sample", "--raw", raw, "--out", out, "--params", params)


def test_ingest_out_equal_to_raw_leaves_the_raw_data_alone(run_step, raw: Path, params: Path) -> None:
    before = snapshot(raw)
    one_line(_ingest(run_step, raw, raw, params), f"output is the same path as the input '{raw}'")
    assert snapshot(raw) == before


@pytest.mark.parametrize("where", ["inside the raw data", "around the raw data"])
def test_ingest_out_overlapping_raw_is_refused(where: str, run_step, raw: Path, params: Path) -> None:
    out = raw / "processed" if where == "inside the raw data" else raw.parent
    before = snapshot(raw)
    one_line(_ingest(run_step, raw, out, params), "output", "the input")
    assert snapshot(raw) == before


def test_ingest_into_another_steps_output_is_refused(run_step, raw: Path, params: Path, tmp_path: Path) -> None:
    validation = tmp_path / "validation"
    validation.mkdir()
    (validation / MARKER).write_text('{"step": "validate"}\n')
    (validation / "validation.json").write_text("{}\n")
    one_line(_ingest(run_step, raw, validation, params), "written by `medseg validate`, not `medseg ingest`")
    assert (validation / "validation.json").read_text() == "{}\n"


def test_disk_full_during_ingest_is_one_line_and_keeps_the_earlier_output(
        run_step, raw: Path, params: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "processed"
    assert _ingest(run_step, raw, out, params).code == 0
    before = snapshot(out)

    def full(path: object, *_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(np, "save", full)
    one_line(_ingest(run_step, raw, out, params), "No space left on device")
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".processed.tmp-*"))


def test_registry_alias_that_is_not_a_plain_name_is_refused(tmp_path: Path) -> None:
    from medseg.data.registry import load_registry
    from medseg.errors import MedsegError

    folder = tmp_path / "registry"
    folder.mkdir()
    entry = folder / "my data.yaml"
    entry.write_text((Path(__file__).parents[2] / "medseg/data/registry/sample.yaml").read_text()
                     .replace("alias: sample", "alias: my data"))
    with pytest.raises(MedsegError, match="alias 'my data' is not a valid name") as error:
        load_registry([folder])
    assert error.value.path == str(entry)
