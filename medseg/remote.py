"""``medseg pull``: one DVC-tracked path, exactly as the project's commit pins it, from the DVC remote.

The pin is read from the project's metadata: ``<target>.dvc`` (raw datasets, SAM checkpoints) or the
``outs`` of ``dvc.lock`` (stage outputs such as ``data/raw/sample`` or ``data/processed/<alias>``). The
object is pulled with DVC into a private scratch repository beside the output (the project folder is
never written, so it may be read-only, as in the image), its hash is checked against the pin, and it is
renamed into place. S3-compatible remotes take credentials from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY) and the endpoint from AWS_ENDPOINT_URL when the remote's config names none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from medseg.errors import MedsegError
from medseg.outputs import checked_output

PROJECT_ENV = "MEDSEG_PROJECT_DIR"


@dataclass(frozen=True)
class Pin:
    """A DVC-tracked path and the version the commit pins: its md5 (``<md5>.dir`` for a folder)."""

    target: str
    md5: str
    size: int | None
    nfiles: int | None
    source: str  # the .dvc file or dvc.lock that pins it


def project_dir(explicit: str | Path | None = None) -> Path:
    """The DVC project whose pins are pulled: ``explicit``, ``$MEDSEG_PROJECT_DIR`` or the working directory."""
    folder = Path(explicit or os.environ.get(PROJECT_ENV) or ".").resolve()
    if not (folder / ".dvc").is_dir():
        raise MedsegError("not a DVC project (no .dvc folder): run from the project root or set "
                          f"${PROJECT_ENV}", folder)
    return folder


def _target(target: str) -> str:
    path = PurePosixPath(target)
    if not target or path.is_absolute() or ".." in path.parts or "\\" in target or str(path) != target.rstrip("/"):
        raise MedsegError("must be a plain relative path inside the project, such as data/raw/mri_prostate",
                          f"--target {target!r}")
    return str(path)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", path) from exc


def _pin_from(entry: Any, target: str, source: Path) -> Pin:
    if not isinstance(entry, dict) or not isinstance(entry.get("md5"), str) or entry.get("hash", "md5") != "md5":
        raise MedsegError(f"the entry for {target} has no md5 hash", source)
    return Pin(target, entry["md5"], entry.get("size"), entry.get("nfiles"), str(source))


def _current_stage(project: Path) -> Callable[[str], bool]:
    """Whether a dvc.lock stage name is one dvc.yaml defines now (DVC keeps entries of removed stages): a
    plain stage by its name, a matrix or foreach stage as ``<name>@<item>``."""
    dvc_yaml = project / "dvc.yaml"
    defined = ((_read_yaml(dvc_yaml) or {}).get("stages") or {}) if dvc_yaml.is_file() else {}

    def current(name: str) -> bool:
        base, generated, _ = name.partition("@")
        stage = defined.get(base)
        return isinstance(stage, dict) and generated == ("@" if ("matrix" in stage or "foreach" in stage) else "")
    return current


def pinned_outputs(project: Path, stages: Collection[str] | None = None) -> list[str]:
    """Every output path that dvc.lock pins (with an md5) for the stages named in ``stages`` (by default, those
    dvc.yaml still defines, by name: a matrix item dropped from params keeps its entry), in dvc.lock's order."""
    lock = project / "dvc.lock"
    locked = ((_read_yaml(lock) or {}).get("stages") or {}) if lock.is_file() else {}
    current = _current_stage(project) if stages is None else stages.__contains__
    return [out["path"] for name, stage in locked.items() if current(name) for out in (stage or {}).get("outs") or []
            if isinstance(out, dict) and isinstance(out.get("path"), str) and isinstance(out.get("md5"), str)]


def find_pin(project: Path, target: str) -> Pin:
    """The version of ``target`` the project pins, from ``<target>.dvc`` or from ``dvc.lock``."""
    target = _target(target)
    pointer = project / f"{target}.dvc"
    if pointer.is_file():
        outs = (_read_yaml(pointer) or {}).get("outs") or []
        named = [o for o in outs if isinstance(o, dict) and o.get("path") == PurePosixPath(target).name]
        if len(named) != 1:
            raise MedsegError(f"expected one output named {PurePosixPath(target).name}", pointer)
        return _pin_from(named[0], target, pointer)
    lock = project / "dvc.lock"
    stages = ((_read_yaml(lock) or {}).get("stages") or {}) if lock.is_file() else {}
    current = _current_stage(project)
    for name, stage in stages.items():
        for out in (stage or {}).get("outs") or []:
            if isinstance(out, dict) and out.get("path") == target and current(name):
                return _pin_from(out, target, lock)
    raise MedsegError(f"{target} is not tracked by DVC in this project (no {target}.dvc, not an output in "
                      "dvc.lock): `dvc add` it (or run its stage), commit, and `dvc push`", project)


def _remote_settings(project: Path, remote: str | None) -> tuple[str, dict[str, Any]]:
    from dvc.config import Config, ConfigError

    try:
        config = Config(dvc_dir=str(project / ".dvc"))
    except ConfigError as exc:
        raise MedsegError(f"DVC config: {exc}", project / ".dvc" / "config") from exc
    name = remote or config["core"].get("remote")
    remotes = config.get("remote", {})
    if not name or name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise MedsegError(f"no DVC remote {name!r} (configured: {known}; `dvc remote add -d <name> <url>`)",
                          project / ".dvc" / "config")
    settings = dict(remotes[name])
    if str(settings.get("url", "")).startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        settings.setdefault("endpointurl", os.environ["AWS_ENDPOINT_URL"])
    return name, settings


def _scratch_repo(folder: Path, name: str, settings: dict[str, Any]) -> Any:
    from dvc.repo import Repo

    repo = Repo.init(str(folder), no_scm=True)
    with repo.config.edit() as config:
        config["core"]["remote"] = name
        config["core"]["analytics"] = False
        config["remote"][name] = settings
        config["cache"]["type"] = "hardlink,copy"  # the checkout shares the cache's blocks: no second copy
    return repo


def pull(target: str, out: str | Path, remote: str | None = None, project: str | Path | None = None) -> Pin:
    """Pull ``target`` at its pinned version into ``out`` (a new path); returns the pin."""
    from dvc.exceptions import DvcException

    from medseg.provenance import dvc_hash

    root = project_dir(project)
    pin = find_pin(root, target)
    destination = checked_output(out, [root])
    if destination.exists() or destination.is_symlink():
        raise MedsegError("output exists; `medseg pull` writes only to a new path", out)
    name, settings = _remote_settings(root, remote)
    destination.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        leaf = PurePosixPath(pin.target).name
        (scratch / f"{leaf}.dvc").write_text(yaml.safe_dump({"outs": [{"md5": pin.md5, "path": leaf, "hash": "md5"}]}))
        repo = _scratch_repo(scratch, name, settings)
        try:
            repo.pull(targets=[str(scratch / f"{leaf}.dvc")])
        except DvcException as exc:
            raise MedsegError(f"DVC could not pull {pin.target} ({pin.md5}) from remote {name!r}: "
                              f"{' '.join(str(exc).split())}", settings.get("url")) from exc
        finally:
            repo.close()
        found = dvc_hash(scratch / leaf)
        if found != pin.md5:
            raise MedsegError(f"pulled content hashes to {found}, but {pin.source} pins {pin.md5}", pin.target)
        os.replace(scratch / leaf, destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return pin
