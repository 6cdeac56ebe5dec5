"""Errors that reach the user as one readable line."""

from __future__ import annotations

from pathlib import Path


class MedsegError(Exception):
    """A problem with user input or configuration, reported as ``<path>: <problem>``."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self) -> tuple[type[MedsegError], tuple[str, str | None]]:
        return (MedsegError, (self.problem, self.path))  # keeps the path across processes

    def one_line(self) -> str:
        """The message with newlines folded, for the CLI."""
        return " ".join(str(self).split())
