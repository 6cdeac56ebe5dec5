"""Helpers of the reliability battery (importable as ``battery``; the ``run_step`` fixture is in conftest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from helpers import tiny_params


@dataclass(frozen=True)
class Outcome:
    code: int
    errors: list[str]  # stderr lines that carry an error


def one_line(outcome: Outcome, *expected: str) -> str:
    """The single error line, after checking exit code 2 and that it names everything expected."""
    assert outcome.code == 2, outcome
    assert len(outcome.errors) == 1, outcome.errors
    for text in expected:
        assert text in outcome.errors[0], (text, outcome.errors[0])
    return outcome.errors[0]


def write_params(path: Path, edit: Callable[[dict], None] = lambda _: None) -> Path:
    """The tiny params, edited, as a YAML file."""
    params = tiny_params()
    edit(params)
    path.write_text(yaml.safe_dump(params))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to show that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
