"""The ``medseg ingest`` and ``medseg validate`` commands on bad input, run as subprocesses."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

pytest_plugins = ["data_fixtures"]


def _medseg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``medseg`` entry point (or the module when it is not installed)."""
    script = Path(sys.executable).with_name("medseg")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "medseg.cli"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ingest_missing_raw_is_one_line_error(
    tmp_path: Path, params_file: Path, assert_no_output: Callable[[Path], None]
) -> None:
    missing, out = tmp_path / "missing", tmp_path / "out"
    result = _medseg("ingest", "--dataset", "x", "--raw", str(missing), "--out", str(out),
                     "--params", str(params_file), cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and "not found" in lines[0]
    assert result.stdout == ""
    assert_no_output(out)


def test_ingest_missing_params_is_one_line_error(tmp_path: Path) -> None:
    params = tmp_path / "nowhere.yaml"
    result = _medseg("ingest", "--dataset", "x", "--raw", str(tmp_path), "--out", str(tmp_path / "out"),
                     "--params", str(params), cwd=tmp_path)
    assert result.returncode != 0
    assert len(result.stderr.splitlines()) == 1 and str(params) in result.stderr
    assert not (tmp_path / "out").exists()


def test_validate_defect_exits_nonzero_naming_the_check(
    ingested_copy: Path, tmp_path: Path, params_file: Path
) -> None:
    masks = np.load(ingested_copy / "masks.npy")
    masks[masks > 0] = 9
    np.save(ingested_copy / "masks.npy", masks)
    out = tmp_path / "validation"
    result = _medseg("validate", "--dataset", "sample", "--data", str(ingested_copy), "--out", str(out),
                     "--params", str(params_file), "--markdown", str(tmp_path / "summary.md"), cwd=tmp_path)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "mask_labels" in errors[0] and str(ingested_copy) in errors[0]
    assert "| mask_labels | FAIL | block |" in (tmp_path / "summary.md").read_text()
    assert (out / "validation.json").is_file()


def test_validate_clean_dataset_exits_zero(
    ingested_sample: Path, tmp_path: Path, params_file: Path
) -> None:
    out = tmp_path / "validation"
    result = _medseg("validate", "--dataset", "sample", "--data", str(ingested_sample), "--out",
                     str(out), "--params", str(params_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "passed 11/11 checks" in result.stdout
