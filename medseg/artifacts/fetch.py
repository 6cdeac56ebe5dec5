"""``medseg fetch_model URI DEST``: a registered model by name and version or stage (KServe's storage-initializer
contract: ``medseg fetch_model <storageUri> /mnt/models``).

``URI`` is ``dvc+<git-url>#<artifact>@<stage or vX.Y.Z>``, the git URL being ``https://...``, ``ssh://...``,
``git@host:org/repo.git`` or ``file:///abs/path``. The repository is cloned once (with its tags); a stage is
resolved to a version with GTO (the latest assignment that was not revoked: DVC's own ``--stage`` takes the
newest tag naming the stage, even an unassignment); the version's file is downloaded with DVC's artifacts API
(``dvc artifacts get <repo> <name> --rev <version>``) from the repository's DVC remote; its DVC hash must be the
one the version's commit pins, it must load weights-only and its recorded run must match the artifact's
declaration. Then ``DEST/<file>`` and ``DEST/registry.json`` (name, version, stage, commit, sha256) appear
together; on any error DEST is left as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from medseg.artifacts.committed import Committed, committed, scm_reader
from medseg.artifacts.declare import AXES, check_artifact_name
from medseg.artifacts.publish import VERSION
from medseg.errors import MedsegError
from medseg.params_registry import STAGE

FORMAT = "medseg.registry/1"
RECORD = "registry.json"
MODEL_FILES = ("model.pt", "encoder.pt", "weights.pt")
GIT_URL = re.compile(r"(https|ssh)://[A-Za-z0-9][^\s#'\"\\]*\Z"  # user:token@ allowed (never recorded)
                     r"|file:///[^\s#@'\"\\]*\Z"
                     r"|[A-Za-z0-9][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9.-]*:[^\s#@'\"\\]+\Z")  # git@host:org/repo.git
URI = re.compile(r"dvc\+(?P<repo>[^#]+)#(?P<name>[^#@]+)@(?P<ref>[^#@]+)\Z")


@dataclass(frozen=True)
class ModelUri:
    repo: str
    name: str
    version: str | None
    stage: str | None

    @property
    def shown(self) -> str:
        """The URI without any credentials in the git URL (for records and messages)."""
        return f"dvc+{public_url(self.repo)}#{self.name}@{self.version or self.stage}"


def public_url(url: str) -> str:
    """``url`` with any ``user:password@`` of an https URL removed."""
    return re.sub(r"^(https://)[^/@]*@", r"\1", url)


def parse_uri(uri: str) -> ModelUri:
    """``dvc+<git-url>#<artifact>@<stage or vX.Y.Z>``, checked; a one-line error naming the part that is wrong."""
    found = URI.match(uri) if isinstance(uri, str) else None
    if found is None:
        raise MedsegError(f"{str(uri)[:120]!r} is not a model URI dvc+<git-url>#<artifact>@<stage or vX.Y.Z> (e.g. "
                          "dvc+https://github.com/org/repo.git#sample-sam-full-automated-vit-t-dec-vanilla@prod)")
    repo, name, ref = found.group("repo", "name", "ref")
    if not GIT_URL.match(repo) or ".." in PurePosixPath(repo.split("://")[-1]).parts:
        raise MedsegError(f"{public_url(repo)[:120]!r} is not a git URL this accepts: https://..., ssh://..., "
                          "git@host:org/repo.git or file:///absolute/path")
    check_artifact_name(name, "the URI's artifact")
    if VERSION.match(ref):
        return ModelUri(repo, name, ref, None)
    if STAGE.match(ref) and len(ref) <= 64:
        return ModelUri(repo, name, None, ref)
    raise MedsegError(f"{ref[:60]!r} after '@' is neither a version vX.Y.Z nor a stage name (e.g. prod)")


def _clone(uri: ModelUri, into: Path) -> Any:
    """The repository cloned with its tags, through scmrepo (no git command needed)."""
    from scmrepo.exceptions import SCMError
    from scmrepo.git import Git

    try:
        return Git.clone(uri.repo, str(into / "repo"))
    except (SCMError, OSError, ValueError) as exc:
        detail = " ".join(str(exc.__cause__ or exc).replace(uri.repo, public_url(uri.repo)).split())[-300:]
        raise MedsegError(f"cannot clone {public_url(uri.repo)}: {detail or exc.__class__.__name__}") from exc


def _version_commit(scm: Any, uri: ModelUri, version: str) -> str:
    from scmrepo.exceptions import SCMError

    try:
        return str(scm.resolve_rev(f"refs/tags/{uri.name}@{version}"))
    except SCMError as exc:
        raise MedsegError(f"{uri.name} has no version {version} (no tag {uri.name}@{version}; `gto show "
                          f"{uri.name}` lists its versions)", uri.shown) from exc


def resolve(scm: Any, uri: ModelUri) -> tuple[str, str]:
    """(version, commit) the URI names: its version, or the version GTO has in its stage."""
    from gto.api import find_versions_in_stage
    from gto.exceptions import ArtifactNotFound

    version = uri.version
    if version is None:
        try:
            found = find_versions_in_stage(str(scm.root_dir), uri.name, uri.stage or "")
        except ArtifactNotFound:  # no tag names it at all
            found = None
        if not found:
            raise MedsegError(f"no version of {uri.name} is in stage {uri.stage!r} ({uri.shown}; `gto show "
                              f"{uri.name}` lists its versions and stages)")
        version = str(found[0].version)
        if not VERSION.match(version):
            raise MedsegError(f"stage {uri.stage!r} of {uri.name} is assigned to a commit with no registered version "
                              f"({version[:12]}): register it, then promote the version", uri.shown)
    return version, _version_commit(scm, uri, version)


def _dvc_config(clone: Path, uri: ModelUri) -> dict[str, Any]:
    """The DVC remote to download from: the repository's default remote (for a file:// repository, read from
    the repository itself, so that a relative local remote resolves as it does there)."""
    from medseg.remote import _remote_settings

    source = Path(uri.repo.removeprefix("file://")) if uri.repo.startswith("file://") else clone
    name, settings = _remote_settings(source, None)
    return {"core": {"remote": name}, "remote": {name: settings}}


def download(clone: Path, uri: ModelUri, version: str, out: Path) -> None:
    """DVC's ``artifacts get`` of ``version`` into the file ``out``."""
    from dvc.exceptions import DvcException
    from dvc.repo.artifacts import Artifacts

    try:
        Artifacts.get(str(clone), uri.name, version=version, out=str(out), config=_dvc_config(clone, uri))
    except DvcException as exc:
        cause = exc.__cause__ or exc
        raise MedsegError(f"DVC could not download {uri.name} {version}: {' '.join(str(cause).split())[:300]}",
                          uri.shown) from exc


def verify(path: Path, artifact: Committed) -> dict[str, Any]:
    """The model's recorded metadata, after checking its DVC hash against the pin, loading it weights-only and
    matching its recorded run against the declaration."""
    from medseg.models.checkpoints import load_exported
    from medseg.provenance import dvc_hash

    found = dvc_hash(path)
    if found != artifact.md5:
        raise MedsegError(f"downloaded file hashes to {found}, but {artifact.pinned_by} at {artifact.commit[:12]} "
                          f"pins {artifact.md5}", artifact.name)
    if artifact.kind == "encoder":
        metadata = _encoder_metadata(path)
        keys: tuple[str, ...] = ("init", "backbone")
    else:
        module, recorded = load_exported(path)
        metadata = {**recorded, "mode": str(module.mode)}  # the mode is the architecture's, not a metadata entry
        keys = AXES
    wrong = [f"{key} {metadata.get(key)!r} (declared {artifact.meta[key]!r})" for key in keys
             if key in artifact.meta and metadata.get(key) != artifact.meta[key]]
    if wrong:
        raise MedsegError(f"the model's recorded run does not match its declaration: {', '.join(wrong)}",
                          artifact.name)
    return metadata


def _encoder_metadata(path: Path) -> dict[str, Any]:
    """A pretrained encoder's metadata (with its backbone), after checking it holds finite tensors only."""
    from medseg.models.checkpoints import safe_load, state_of

    payload = safe_load(path)
    state_of(payload, path)  # so the payload is a dict: the state dict, or one holding it
    recorded = payload.get("metadata")
    return {**(recorded if isinstance(recorded, dict) else {}), "backbone": payload.get("backbone")}


def _record(uri: ModelUri, version: str, artifact: Committed, path: Path, metadata: dict[str, Any]) -> dict:
    from medseg.provenance import synthetic_data
    from medseg.train.fingerprint import file_sha256

    return {"format": FORMAT, "name": uri.name, "version": version, "stage": uri.stage, "commit": artifact.commit,
            "repo": public_url(uri.repo), "uri": uri.shown, "path": artifact.path, "file": path.name,
            "dvc_md5": artifact.md5, "sha256": file_sha256(path), "labels": list(artifact.labels),
            "meta": artifact.meta, "random_init": metadata.get("random_init"),
            "synthetic_data": synthetic_data(metadata)}


def fetch_model(uri_text: str, dest: str | Path) -> dict[str, Any]:
    """Fetch the model ``uri_text`` names into ``dest``; returns the record written as ``registry.json``."""
    uri = parse_uri(uri_text)
    target = _check_dest(dest)
    with tempfile.TemporaryDirectory(prefix="medseg-fetch-") as scratch:
        scm = _clone(uri, Path(scratch))
        try:
            version, commit = resolve(scm, uri)
            artifact = committed(scm_reader(scm), commit, uri.name)
            out = Path(scratch) / PurePosixPath(artifact.path).name
            download(Path(scm.root_dir), uri, version, out)
        finally:
            scm.close()
        record = _record(uri, version, artifact, out, verify(out, artifact))
        with _filling(target, dest) as staging:
            shutil.move(out, staging / out.name)
            (staging / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _ours(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return not names or (RECORD in names and names <= {RECORD, *MODEL_FILES})


def _check_dest(dest: str | Path) -> Path:
    from medseg.outputs import checked_output

    target = checked_output(dest)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise MedsegError("destination exists and is not a folder", dest)
    if target.is_dir() and not _ours(target):
        raise MedsegError(f"destination holds files `medseg fetch_model` did not write (e.g. "
                          f"{sorted(p.name for p in target.iterdir())[0]}); give an empty folder", dest)
    return target


@contextmanager
def _filling(target: Path, dest: str | Path) -> Iterator[Path]:
    """A staging folder inside ``target`` (which may be a mount point, as KServe's /mnt/models is: it is never
    replaced, only filled) whose files are moved into ``target`` when the block succeeds; earlier fetched files
    are replaced, and nothing is left behind on failure."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target))
    try:
        yield staging
        if not _ours_besides(target, staging):
            raise MedsegError("destination changed while fetching", dest)
        for old in [p for p in target.iterdir() if p.name in MODEL_FILES and not (staging / p.name).exists()]:
            old.unlink()
        for item in sorted(staging.iterdir(), key=lambda p: p.name == RECORD):  # the record last
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ours_besides(target: Path, staging: Path) -> bool:
    return all(p == staging or p.name in (RECORD, *MODEL_FILES) for p in target.iterdir())
