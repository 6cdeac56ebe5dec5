"""What a commit says about an artifact, read from git without a checkout: its declaration (dvc.yaml), the
version of its file that DVC pins (dvc.lock or ``<path>.dvc``) and its metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from medseg.errors import MedsegError
from medseg.gitread import committed_file

Reader = Callable[[str, str], "bytes | None"]  # (commit, path) -> the file's content at the commit, or None


@dataclass(frozen=True)
class Committed:
    """An artifact as one commit declares and pins it."""

    name: str
    commit: str
    path: str  # the model file, relative to the repository root
    labels: tuple[str, ...]
    meta: dict[str, Any]
    md5: str  # the DVC hash the commit pins for ``path``
    pinned_by: str  # dvc.lock or <path>.dvc

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind") or "finetuned")


def reader_for(source: Path | Reader) -> Reader:
    """How to read committed files: with the git command in a checkout, or a given reader (``scm_reader``)."""
    if isinstance(source, Path):
        return lambda commit, path: committed_file(source, commit, path)
    return source


def scm_reader(scm: Any) -> Reader:
    """Committed files through scmrepo (dulwich or libgit2: no git command needed, as in the image)."""
    def read(commit: str, path: str) -> bytes | None:
        fs = scm.get_fs(commit)
        if not fs.isfile(path):
            return None
        with fs.open(path, "rb") as handle:
            return bytes(handle.read())
    return read


def _yaml_at(source: Path | Reader, commit: str, path: str) -> Any:
    content = reader_for(source)(commit, path)
    if content is None:
        return None
    try:
        return yaml.safe_load(content.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", f"{commit[:12]}:{path}") from exc


def declaration(root: Path | Reader, commit: str, name: str) -> dict[str, Any]:
    """The ``artifacts`` entry ``name`` of dvc.yaml at ``commit``."""
    loaded = _yaml_at(root, commit, "dvc.yaml")
    artifacts = loaded.get("artifacts") if isinstance(loaded, dict) else None
    entry = artifacts.get(name) if isinstance(artifacts, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        known = sorted(artifacts) if isinstance(artifacts, dict) else []
        listed = ", ".join(known[:5]) + (" ..." if len(known) > 5 else "")
        raise MedsegError(f"{name!r} is not a model artifact declared in dvc.yaml at {commit[:12]} (declared: "
                          f"{listed or 'none'}; `medseg artifacts` lists them, `medseg artifacts --write` declares "
                          "params.yaml's)")
    return entry


def pinned_md5(root: Path | Reader, commit: str, path: str) -> tuple[str, str] | None:
    """(md5, the file pinning it) for ``path`` at ``commit``: ``<path>.dvc``, else an output of dvc.lock."""
    pointer = _yaml_at(root, commit, f"{path}.dvc")
    if isinstance(pointer, dict):
        for out in pointer.get("outs") or []:
            if (isinstance(out, dict) and out.get("path") == PurePosixPath(path).name
                    and isinstance(out.get("md5"), str)):
                return out["md5"], f"{path}.dvc"
    lock = _yaml_at(root, commit, "dvc.lock")
    stages = lock.get("stages") if isinstance(lock, dict) else None
    for stage in (stages or {}).values():
        outs = stage.get("outs") if isinstance(stage, dict) else None
        for out in outs or []:
            if isinstance(out, dict) and out.get("path") == path and isinstance(out.get("md5"), str):
                return out["md5"], "dvc.lock"
    return None


def committed(root: Path | Reader, commit: str, name: str) -> Committed:
    """Artifact ``name`` as ``commit`` declares and pins it; a one-line error when it does not."""
    entry = declaration(root, commit, name)
    path = str(PurePosixPath(entry["path"]))
    pin = pinned_md5(root, commit, path)
    if pin is None:
        raise MedsegError(f"{path} is not pinned at {commit[:12]} (no output in dvc.lock, no {path}.dvc): run its "
                          "stage (dvc repro) or `dvc add` it, then commit", name)
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    labels = tuple(str(label) for label in entry.get("labels") or [])
    return Committed(name, commit, path, labels, meta, pin[0], pin[1])


def metrics_at(root: Path | Reader, commit: str, artifact: Committed) -> dict[str, Any] | None:
    """The artifact's metrics file (``meta.metrics``) at ``commit``, or None when there is none."""
    path = artifact.meta.get("metrics")
    if not isinstance(path, str):
        return None
    content = reader_for(root)(commit, str(PurePosixPath(path)))
    if content is None:
        return None
    try:
        loaded = json.loads(content.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegError(f"corrupt metrics file ({exc.__class__.__name__})", f"{commit[:12]}:{path}") from exc
    if not isinstance(loaded, dict):
        raise MedsegError("corrupt metrics file (not a JSON object)", f"{commit[:12]}:{path}")
    return loaded
