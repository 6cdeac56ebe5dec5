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


def load_params(path: str | Path | None = None, *, text: str | None = None, override: str | None = None
                ) -> dict[str, Any]:
    """Load the params, checked against the schema (``medseg.params_schema``) with defaults filled in: the
    file (``path``, ``$MEDSEG_PARAMS`` or ./params.yaml), or the whole params as YAML ``text`` instead (as a
    Kubeflow task receives them), with ``override`` (a YAML/JSON mapping) merged over them key by key. A
    missing, malformed or out-of-range input is a one-line error naming the file or option and the key."""
    from medseg.params_schema import validated

    if text is not None:
        source, loaded = "--params-text", parse_mapping(text, "--params-text")
    else:
        resolved = params_path(path)
        if not resolved.is_file():
            raise MedsegError("params file not found", resolved)
        try:
            source, loaded = str(resolved), parse_mapping(resolved.read_text(encoding="utf-8"), str(resolved))
        except UnicodeDecodeError as exc:
            raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", resolved) from exc
    if override and override.strip():
        loaded = merged(loaded, parse_mapping(override, "--params-override"))
        source += " with --params-override"
    return validated(loaded, source)


def parse_mapping(text: str, source: str) -> dict[str, Any]:
    """A YAML (or JSON, a subset of YAML) mapping; anything else is a one-line error naming ``source``."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", source) from exc
    if loaded is None and source == "--params-override":
        return {}
    if not isinstance(loaded, dict):
        raise MedsegError("expected a mapping at the top level", source)
    return loaded


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings key by key, any other value replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


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
