"""Write outputs atomically: build in a temporary sibling, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _publish(tmp: Path, target: Path, mode: int) -> None:
    """Give the temporary file or folder normal permissions (mkstemp/mkdtemp make them private),
    then move it into place; on failure the temporary copy is removed."""
    try:
        os.chmod(tmp, mode & ~_current_umask())
        if tmp.is_dir() and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    _publish(tmp, target, 0o777)


@contextlib.contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path (same suffix as ``target``) that replaces ``target`` only if the
    block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        _discard(tmp)
        raise
    _publish(tmp, target, 0o666)


def write_json(target: str | Path, payload: Any) -> None:
    """Write JSON atomically, pretty-printed and newline-terminated."""
    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
