"""Named settings profiles: YAML files of params.yaml overrides, ``profiles/<name>.yaml`` beside params.yaml.

``medseg profile --name study`` writes the values a profile sets into params.yaml in place: only the text
of each changed value is replaced (comments, order and layout stay, and end-of-line comments keep their
column where they can), the result is checked against the schema (``medseg.params_schema``) and then
replaces the file atomically. Only a file named ``params.yaml`` is ever edited. ``--dvc`` prints the
equivalent ``dvc exp run -S key=value ...`` instead, an experiment that leaves the workspace as it is.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import MedsegError
from medseg.names import check_name
from medseg.params import params_path

PROFILES_DIR = "profiles"
PARAMS_NAME = "params.yaml"
COMMENT = re.compile(r"( +)#")


@dataclass(frozen=True)
class Override:
    """One value a profile sets: the dotted key, the value's text as written in the profile, its value."""

    key: str
    text: str
    value: Any


def profile_file(name: str, params: Path) -> Path:
    """The profile's file: ``<params folder>/profiles/<name>.yaml``, or ``name`` itself when it is a YAML path."""
    folder = params.parent / PROFILES_DIR
    path = Path(name) if name.endswith((".yaml", ".yml")) else folder / f"{check_name(name, '--name')}.yaml"
    if not path.is_file():
        known = sorted(item.stem for item in folder.glob("*.yaml"))
        raise MedsegError(f"no such profile (known in {folder}: {', '.join(known) or 'none'})", path)
    return path


def _compose(text: str, source: Path) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", source) from exc


def _span(text: str, node: yaml.Node) -> str:
    return text[node.start_mark.index : node.end_mark.index]


def _leaves(node: yaml.MappingNode, text: str, prefix: str, source: Path) -> list[Override]:
    found: list[Override] = []
    for key_node, value in node.value:
        key = f"{prefix}{key_node.value}"
        if isinstance(value, yaml.MappingNode) and value.value:
            found += _leaves(value, text, f"{key}.", source)
            continue
        written = _span(text, value) or "null"
        if "\n" in written:
            raise MedsegError(f"{key}: write the value on one line (lists in flow style, e.g. [0.5, 1.5])", source)
        found.append(Override(key, written, yaml.safe_load(written)))
    return found


def read_profile(path: Path) -> list[Override]:
    """The overrides of a profile file, in file order."""
    text = path.read_text(encoding="utf-8")
    root = _compose(text, path)
    if not isinstance(root, yaml.MappingNode):
        raise MedsegError("expected a mapping of params.yaml sections", path)
    return _leaves(root, text, "", path)


def _node(root: yaml.Node | None, key: str, source: Path) -> yaml.Node:
    node = root
    for part in key.split("."):
        children = dict((k.value, v) for k, v in node.value) if isinstance(node, yaml.MappingNode) else {}
        if part not in children:
            raise MedsegError(f"{key}: the profile sets a key that params.yaml does not have", source)
        node = children[part]
    assert node is not None
    return node


def _replace(text: str, start: int, end: int, new: str) -> str:
    """``text`` with ``[start, end)`` replaced by ``new``; a comment after it keeps its column if it can."""
    if start == end and text[start - 1 : start] == ":":
        new = f" {new}"
    rest = text[end:]
    comment = COMMENT.match(rest)
    if comment:
        spaces = max(1, len(comment.group(1)) - (len(new) - (end - start)))
        rest = " " * spaces + rest[len(comment.group(1)) :]
    return text[:start] + new + rest


def applied(text: str, overrides: list[Override], source: Path) -> tuple[str, list[str]]:
    """``text`` (a params.yaml) with the overrides' values written in place, and ``key: old -> new`` per change."""
    root = _compose(text, source)
    edits: list[tuple[int, int, Override, str]] = []
    for override in overrides:
        node = _node(root, override.key, source)
        current = _span(text, node)
        if isinstance(node, yaml.MappingNode) or "\n" in current:
            raise MedsegError(f"{override.key}: a block in params.yaml; a profile sets single-line values only",
                              source)
        value = yaml.safe_load(current) if current else None
        if value != override.value or type(value) is not type(override.value):
            edits.append((node.start_mark.index, node.end_mark.index, override, current or "null"))
    for start, end, override, _ in sorted(edits, key=lambda edit: -edit[0]):
        text = _replace(text, start, end, override.text)
    return text, [f"{o.key}: {old} -> {o.text}" for _, _, o, old in sorted(edits, key=lambda edit: edit[0])]


def apply_profile(name: str, params: str | Path | None = None) -> tuple[Path, list[str]]:
    """Write profile ``name`` into the params file (which must be named params.yaml); returns the file and
    the changes. Nothing is written when the result fails the schema."""
    from medseg.atomic import atomic_file
    from medseg.params_schema import validated

    path = params_path(params)
    if path.name != PARAMS_NAME or path.is_symlink() or not path.is_file():
        raise MedsegError(f"medseg profile edits only a regular file named {PARAMS_NAME}", path)
    overrides = read_profile(profile_file(name, path))
    new_text, changes = applied(path.read_text(encoding="utf-8"), overrides, path)
    validated(yaml.safe_load(new_text), str(path))
    if changes:
        with atomic_file(path) as tmp:
            tmp.write_text(new_text, encoding="utf-8")
    return path, changes


def dvc_command(name: str, params: str | Path | None = None) -> str:
    """``dvc exp run -S key=value ...`` that runs the profile as a DVC experiment."""
    path = params_path(params)
    sets = " ".join(f"-S {shlex.quote(f'{o.key}={o.text}')}" for o in read_profile(profile_file(name, path)))
    return f"dvc exp run {sets}"


def profile_command(name: str, params: str | Path | None = None, dvc: bool = False) -> str:
    """What ``medseg profile`` prints: the DVC command, or what applying the profile changed."""
    if dvc:
        return dvc_command(name, params)
    path, changes = apply_profile(name, params)
    if not changes:
        return f"profile: {path} already has every value of profile {name}; nothing changed"
    return (f"profile: {name} -> {path}, {len(changes)} value(s) changed:\n  " + "\n  ".join(changes)
            + stale_artifacts_hint(Path(path)))


def stale_artifacts_hint(params_file: Path) -> str:
    """A closing line when the dvc.yaml beside ``params_file`` no longer declares the model artifacts the params
    make (README "Model registry"), else ''."""
    from medseg.artifacts.declare import committed_artifacts, declared
    from medseg.params import load_params

    dvc_yaml = params_file.parent / "dvc.yaml"
    if not dvc_yaml.is_file() or committed_artifacts(dvc_yaml) == declared(load_params(params_file)):
        return ""
    return f"\nprofile: {dvc_yaml}'s artifacts no longer follow the params: run `medseg artifacts --write`"
