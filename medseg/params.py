"""Reading params.yaml, the single source of settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import MedsegError

DEFAULT_PARAMS = "params.yaml"
PARAMS_ENV = "MEDSEG_PARAMS"


def params_path(explicit: str | Path | None = None) -> Path:
    """The params file to use: the explicit path, ``$MEDSEG_PARAMS``, or ``./params.yaml``."""
    return Path(explicit or os.environ.get(PARAMS_ENV) or DEFAULT_PARAMS)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Load the params file, checked against the schema (``medseg.params_schema``) with defaults filled
    in; a missing, malformed or out-of-range file is a one-line error naming the file and the key."""
    from medseg.params_schema import validated

    resolved = params_path(path)
    if not resolved.is_file():
        raise MedsegError("params file not found", resolved)
    try:
        loaded = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", resolved) from exc
    if not isinstance(loaded, dict):
        raise MedsegError("expected a mapping at the top level", resolved)
    return validated(loaded, str(resolved))


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One stage's settings, with a clear error when the section is absent."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise MedsegError(f"params has no '{name}' section")
    return value


def lookup(params: dict[str, Any], dotted_key: str) -> Any:
    """Value of a dotted key such as ``finetune.lr``; KeyError if any part is missing."""
    node: Any = params
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted_key)
        node = node[part]
    return node
