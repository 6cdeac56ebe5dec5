"""Exclusive, non-blocking locks that keep two medseg runs from writing the same place at once.

A lock is an advisory ``flock`` on a sibling file ``.<name>.lock`` of the locked path (the path
itself may not exist yet, or be replaced by a rename while locked). The lock file is removed on
release; a run that locked a file another run had just removed retries on the new one, so two runs
never both hold a lock. A second run fails at once with one line naming the path."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from medseg.errors import MedsegError

LOCK_SUFFIX = ".lock"


def lock_file_of(target: Path) -> Path:
    """The lock file that guards ``target``."""
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def _acquire(lock_path: Path, target: Path, what: str) -> int:
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MedsegError(f"{what} is in use by another medseg run (lock {lock_path.name}); "
                              "wait for it to finish", target) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the holder removed this file as we opened it: lock the current one


@contextlib.contextmanager
def exclusive_lock(target: str | Path, what: str = "this output") -> Iterator[None]:
    """Hold the lock of ``target`` for the block; MedsegError at once when another run holds it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = lock_file_of(target)
    fd = _acquire(lock_path, target, what)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)
