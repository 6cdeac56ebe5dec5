"""Where a result came from: the code revision, the DVC hashes of the inputs and the params it ran with.

Every step records this beside its output (``provenance.json``, and inside ``metrics.json`` and the other
summaries), and on Kubeflow also on the output artifacts' metadata, so a number can be traced back to a
commit, to the exact data and checkpoint versions DVC pins, and to the settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

GIT_SHA_ENV = "MEDSEG_GIT_SHA"  # set in the image at build time (the image has no .git)
PROVENANCE_FILE = "provenance.json"


def git_revision(cwd: str | Path | None = None) -> dict[str, Any]:
    """``{"git_sha": ..., "git_dirty": ...}``: the image's build revision (``$MEDSEG_GIT_SHA``), else the
    checkout's HEAD and whether tracked files differ from it; ``unknown`` outside any git checkout."""
    baked = os.environ.get(GIT_SHA_ENV, "").strip()
    if baked:  # `make image IMAGE_TAG=...` from a changed tree bakes "<sha>-dirty"
        return {"git_sha": baked.removesuffix("-dirty"), "git_dirty": baked.endswith("-dirty")}
    try:
        sha, dirty = git_head(cwd)
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "git_dirty": None}
    return {"git_sha": sha, "git_dirty": dirty}


def git_head(cwd: str | Path | None = None, exclude: tuple[str, ...] = ()) -> tuple[str, bool]:
    """HEAD's SHA and whether tracked files (outside the ``exclude`` paths) differ from it; OSError or
    SubprocessError outside a git checkout."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True,
                         timeout=30).stdout.strip()
    paths = ["--", ".", *(f":(exclude){path}" for path in exclude)] if exclude else []
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", *paths], cwd=cwd,
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    return sha, bool(changed)


def dvc_hash(path: str | Path) -> str:
    """The hash DVC records for ``path`` in dvc.lock and .dvc files: the file's md5, or ``<md5>.dir`` for a
    folder (the md5 of its listing), computed by DVC's own hashing (dvc-data)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    filesystem = LocalFileSystem()
    with tempfile.TemporaryDirectory(prefix="medseg-hash-") as scratch:
        _, _, obj = build(HashFileDB(filesystem, scratch), os.fspath(path), filesystem, "md5")
    return str(obj.hash_info.value)


SAMPLE_ALIAS = "sample"  # the dataset alias that accepts only the synthetic phantom (medseg sample)


def synthetic_data(record: Mapping[str, Any]) -> bool | None:
    """A run record's synthetic-data flag (metrics, model metadata); a record that does not say is synthetic
    when it names the sample alias, and unknown (``None``) otherwise."""
    flag = record.get("synthetic_data")
    if flag is None and (record.get("dataset") == SAMPLE_ALIAS or SAMPLE_ALIAS in (record.get("datasets") or [])):
        return True
    return flag


def params_sha256(params: Mapping[str, Any]) -> str:
    """A digest of the settings (canonical JSON), the same whatever the key order or YAML layout."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def record(step: str, inputs: Mapping[str, str | Path | None], params: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance of one step run: revision, ``{input name: {path, dvc_hash}}`` for the inputs given
    (``None`` ones are left out) and the params in full with their digest."""
    hashed = {name: {"path": os.fspath(path), "dvc_hash": dvc_hash(path)}
              for name, path in inputs.items() if path is not None}
    return {"step": step, **git_revision(), "inputs": hashed, "params_sha256": params_sha256(params),
            "params": dict(params)}


BRIEF_INPUTS = 8  # more inputs than this (a report's collected runs) are summarised in the brief form


def brief(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """What metrics.json and the Kubeflow artifact metadata carry: everything but the params in full (those
    are in provenance.json beside it, under the same digest); many inputs become a count and one digest of
    their hashes, so that a task collecting hundreds of artifacts stays within the launcher's limits."""
    short = {key: value for key, value in provenance.items() if key != "params"}
    inputs = short.get("inputs", {})
    if len(inputs) > BRIEF_INPUTS:
        listing = json.dumps(sorted(entry["dvc_hash"] for entry in inputs.values()))
        short["inputs"] = {"count": len(inputs), "hashes_sha256": hashlib.sha256(listing.encode()).hexdigest()}
    return short


def write(folder: str | Path, provenance: Mapping[str, Any]) -> Path:
    """Write ``provenance.json`` into an output folder (a step's temporary output, renamed with it)."""
    path = Path(folder) / PROVENANCE_FILE
    path.write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    return path


class Recorder:
    """The provenance of the step now running, computed once, when an output is first written (the inputs
    have been checked by then). ``inputs`` and ``params`` are read lazily from the step's arguments."""

    def __init__(self, step: str, inputs: Callable[[], Mapping[str, str | Path | None]],
                 params: Callable[[], Mapping[str, Any] | None]) -> None:
        self.step, self._inputs, self._params = step, inputs, params
        self._record: dict[str, Any] | None = None

    def get(self) -> dict[str, Any] | None:
        """The record, or None when the step read no params (nothing to record)."""
        if self._record is None:
            params = self._params()
            if params is None:
                return None
            self._record = record(self.step, self._inputs(), params)
        return self._record


_ACTIVE: ContextVar[Recorder | None] = ContextVar("medseg_provenance", default=None)


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Make ``recorder`` the current step's provenance while the block runs."""
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def current() -> dict[str, Any] | None:
    """The running step's provenance, or None outside a recorded step (library use, tests)."""
    recorder = _ACTIVE.get()
    return recorder.get() if recorder is not None else None


def with_brief(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with the brief provenance of the current step added (unchanged outside a step)."""
    record = current()
    return summary if record is None else {**summary, "provenance": brief(record)}
