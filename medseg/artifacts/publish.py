"""``medseg register`` and ``medseg promote``: GTO's tags, after the checks GTO and DVC do not make.

``register`` tags the commit at HEAD (``<name>@vX.Y.Z``) only when the artifact is declared there, its file is
pinned there (dvc.lock or ``<path>.dvc``), nothing about it is uncommitted, and (``registry.require_pushed``) its
DVC object is on the default remote, so that a deployment can fetch what was registered. ``promote`` assigns a
stage (``<name>#<stage>#N``) only to a version whose commit holds its metrics (``meta.metrics``: the evaluation of
exactly the pinned model file), and refuses random-init weights and synthetic-data models for
``registry.guarded_stages``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.artifacts.committed import Committed, committed, metrics_at
from medseg.artifacts.declare import check_artifact_name
from medseg.errors import MedsegError
from medseg.gitread import git, repository_root, resolve_commit

VERSION = re.compile(r"v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)\Z")


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    commit: str
    path: str
    md5: str


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.match(version):
        raise MedsegError(f"--version {version!r:.40} is not a version vMAJOR.MINOR.PATCH, e.g. v1.0.0")
    return version


def project_root(folder: str | Path = ".") -> Path:
    """The git checkout holding ``folder``; it must be a DVC project."""
    root = repository_root(Path(folder).resolve())
    if not (root / ".dvc").is_dir():
        raise MedsegError("not a DVC project (no .dvc folder at the repository root)", root)
    return root


def _gto_error(exc: Exception, what: str) -> MedsegError:
    return MedsegError(f"GTO refused to {what}: {' '.join(str(exc).split()) or exc.__class__.__name__}")


def _check_clean(root: Path, artifact: Committed) -> None:
    """Nothing about the model is uncommitted: dvc.yaml, its pin, and the workspace's copy of the file."""
    from medseg.provenance import dvc_hash

    watched = ["dvc.yaml", artifact.pinned_by]
    status = [line for line in git(["status", "--porcelain", "--", *watched], root).stdout.decode(
        errors="replace").splitlines() if line.strip()]
    if status:
        raise MedsegError(f"uncommitted changes to {', '.join(line[3:] for line in status)}: commit "
                          "them first (a version names a commit)", artifact.name)
    workspace = root / artifact.path
    if workspace.is_file() and dvc_hash(workspace) != artifact.md5:
        raise MedsegError(f"{artifact.path} in the workspace differs from the version HEAD pins "
                          f"({artifact.pinned_by}: {artifact.md5}): commit it (dvc commit, git commit) or restore it "
                          "(dvc checkout)", artifact.name)


def _check_pushed(root: Path, artifact: Committed) -> None:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            remote = repo.cloud.get_remote_odb(command="register")
            found = remote.exists(artifact.md5)
    except DvcException as exc:
        raise MedsegError(f"cannot check the DVC remote: {' '.join(str(exc).split())}", root) from exc
    if not found:
        raise MedsegError(f"{artifact.path} ({artifact.md5}) is not on the DVC remote: `dvc push` it first "
                          "(or set registry.require_pushed: false)", artifact.name)


def _bump_args(root: Path, name: str, version: str | None, bump: str) -> dict[str, Any]:
    """GTO's version arguments: an explicit version, else a bump of the latest registered one (the first
    version of an artifact is GTO's first, v0.0.1)."""
    from gto.api import find_latest_version
    from gto.exceptions import ArtifactNotFound

    if version is not None:
        return {"version": check_version(version)}
    try:
        latest = find_latest_version(str(root), name, registered=True)
    except ArtifactNotFound:  # no tag names it yet
        latest = None
    if latest is None:
        return {}
    return {f"bump_{bump}": True}


def register(name: str, version: str | None, bump: str | None, settings: dict[str, Any],
             folder: str | Path = ".", push: bool = False) -> Registered:
    """Register the model HEAD pins as a new version of artifact ``name`` (a GTO tag)."""
    from gto.api import register as gto_register
    from gto.exceptions import GTOException

    check_artifact_name(name)
    if version is not None and bump is not None:
        raise MedsegError("give --version or --bump, not both")
    root = project_root(folder)
    commit = resolve_commit(root, "HEAD")
    if commit is None:
        raise MedsegError("the repository has no commit yet", root)
    artifact = committed(root, commit, name)
    _check_clean(root, artifact)
    if settings["require_pushed"]:
        _check_pushed(root, artifact)
    message = f"Register {name}: {artifact.path} ({artifact.md5}, {artifact.pinned_by}) at commit {commit}"
    try:
        event = gto_register(str(root), name, commit, message=message, push=push, stdout=False,
                             **_bump_args(root, name, version, bump or settings["default_bump"]))
    except GTOException as exc:
        raise _gto_error(exc, f"register {name}") from exc
    return Registered(name, str(event.version), commit, artifact.path, artifact.md5)


def version_commit(root: Path, name: str, version: str) -> str:
    """The commit that version ``version`` of ``name`` names (its GTO tag ``<name>@<version>``)."""
    commit = resolve_commit(root, f"refs/tags/{name}@{check_version(version)}")
    if commit is None:
        raise MedsegError(f"{name} has no version {version} (no tag {name}@{version}; `gto show {name}` lists its "
                          "versions, `medseg register` makes one)")
    return commit


def check_promotable(root: Path, artifact: Committed, stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The artifact's metrics at its commit, after checking that they exist, belong to exactly the pinned file,
    and (guarded stages) come from a model trained from real weights on real data."""
    metrics = metrics_at(root, artifact.commit, artifact)
    where = artifact.meta.get("metrics") or "meta.metrics (not declared)"
    if metrics is None:
        raise MedsegError(f"no metrics at {artifact.commit[:12]} ({where}): evaluate the model (dvc repro) and "
                          "commit its metrics before promoting it", artifact.name)
    model_input = ((metrics.get("provenance") or {}).get("inputs") or {}).get("model") or {}
    if artifact.kind != "encoder" and model_input.get("dvc_hash") != artifact.md5:
        raise MedsegError(f"the metrics at {artifact.commit[:12]} ({where}) are not of this model file "
                          f"(evaluated {model_input.get('dvc_hash') or 'an unrecorded model'}, pinned "
                          f"{artifact.md5}): re-run its evaluation and commit it", artifact.name)
    if stage in settings["guarded_stages"]:
        from medseg.provenance import synthetic_data

        for key, value in (("random_init", metrics.get("random_init")), ("synthetic_data", synthetic_data(metrics))):
            if value is not False:
                state = "not recorded" if value is None else "true"
                raise MedsegError(f"stage {stage} is guarded (registry.guarded_stages): {key} is {state} for this "
                                  f"version ({where}): only models from real weights trained on real data go "
                                  "there", artifact.name)
    return metrics


def promote(name: str, version: str, stage: str, settings: dict[str, Any], folder: str | Path = ".",
            push: bool = False) -> Committed:
    """Assign ``stage`` to version ``version`` of ``name`` (a GTO tag) after :func:`check_promotable`."""
    from gto.api import assign
    from gto.exceptions import GTOException

    check_artifact_name(name)
    stages = settings["stages"]
    if stage not in stages:
        raise MedsegError(f"--stage {stage!r:.40} is not one of registry.stages ({', '.join(stages)})")
    root = project_root(folder)
    artifact = committed(root, version_commit(root, name, version), name)
    check_promotable(root, artifact, stage, settings)
    message = f"Promote {name} {version} ({artifact.path}, {artifact.md5}, commit {artifact.commit}) to {stage}"
    try:
        assign(str(root), name, stage, version=version, message=message, push=push, stdout=False)
    except GTOException as exc:
        raise _gto_error(exc, f"assign {stage} to {name} {version}") from exc
    return artifact
