"""The ``run_step`` fixture: run a step in-process and read what a user sees."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from battery import Outcome, write_params

from medseg.cli import main


@pytest.fixture
def run_step(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """``run_step("ingest", "--dataset", ...)``: exit code and the error lines on stderr."""
    def run(*argv: str | Path) -> Outcome:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err
        return Outcome(code, [line for line in re.split(r"[\r\n]+", err) if line.startswith("medseg ")
                              and ": error: " in line])
    return run


@pytest.fixture
def params(tmp_path: Path) -> Path:
    """The tiny params as a file, training state kept under the test's folder."""
    return write_params(tmp_path / "params.yaml", lambda p: p["finetune"].update(work_dir=str(tmp_path / "work")))
