"""The code base stays ruff-clean (rules in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_reports_nothing() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", str(REPO)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
