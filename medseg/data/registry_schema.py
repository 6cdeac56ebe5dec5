"""The JSON schema of a registry entry (``medseg/data/registry.schema.json``, package data).

It is the published, editor-friendly form of what ``medseg.data.registry`` checks when it loads an entry,
and the one place where every field and adapter setting is described: ``medseg datasets --check`` checks
one entry file against both, and ``fields_markdown`` (``medseg datasets --fields``, the tables in README
"Custom dataset entry") renders the descriptions for the keys each adapter module declares, so the
documentation cannot drift from the code (a test compares the schema with the adapters' keys).
"""

from __future__ import annotations

import functools
import json
from importlib import import_module, resources
from pathlib import Path
from typing import Any

from medseg.data.registry import (
    ADAPTER_KINDS,
    REQUIRED,
    DatasetSpec,
    builtin_entry,
    parse_entry,
    read_entry,
)
from medseg.errors import MedsegError

SCHEMA_FILE = "registry.schema.json"


@functools.cache
def load_schema() -> dict[str, Any]:
    """The registry entry schema (JSON Schema draft 2020-12)."""
    return json.loads((resources.files("medseg.data") / SCHEMA_FILE).read_text(encoding="utf-8"))


def field_titles() -> dict[str, str]:
    """What each top-level field is for, in a few words (used in missing-field errors)."""
    return {key: spec["title"] for key, spec in load_schema()["properties"].items()}


def json_keys(value: Any) -> Any:
    """``value`` with every mapping key as a string, as JSON sees it (YAML allows ``{0: background}``)."""
    if isinstance(value, dict):
        return {str(key): json_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_keys(item) for item in value]
    return value


def _where(path: Any) -> str:
    """A JSON path such as ``settings, exclude, 0`` as ``settings.exclude[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' * bool(text)}{part}"
    return text


def schema_problem(entry: Any) -> str | None:
    """The most relevant way ``entry`` breaks the schema, as ``<key>: <problem>``; None when it conforms."""
    try:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match
    except ImportError as exc:  # pinned in requirements.lock; only a bare `pip install .` lacks it
        raise MedsegError("checking against the schema needs the jsonschema package (requirements.lock)") from exc
    validator = Draft202012Validator(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)
    error = best_match(validator.iter_errors(json_keys(entry)))
    if error is None:
        return None
    where = _where(error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def check_entry_file(path: str | Path) -> DatasetSpec:
    """One entry file checked as the registry loads it (settings by its adapter), then against the schema;
    its alias must be its file name and not a built-in dataset's (unless it is that built-in entry)."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("registry entry file not found", path)
    if path.suffix != ".yaml":
        raise MedsegError("a registry entry is a file named <alias>.yaml (other files are not read)", path)
    try:
        entry = read_entry(path, path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MedsegError("not UTF-8 text", path) from exc
    spec = parse_entry(path, entry)
    problem = schema_problem(entry)
    if problem:
        raise MedsegError(f"{problem} (schema: medseg/data/{SCHEMA_FILE})", path)
    builtin = builtin_entry(spec.alias)
    if builtin is not None and builtin.resolve() != path.resolve():
        raise MedsegError(f"alias '{spec.alias}' is already taken by a built-in dataset; rename this entry", path)
    return spec


def _description(spec: dict[str, Any]) -> str:
    """A property's description, or that of the definition it refers to."""
    if "description" in spec:
        return str(spec["description"])
    name = spec["$ref"].removeprefix("#/$defs/")
    return str(load_schema()["$defs"][name]["description"])


def _fields_table() -> list[str]:
    properties = load_schema()["properties"]
    lines = ["| field | required | for | meaning |", "|---|---|---|---|"]
    for key in DatasetSpec.__dataclass_fields__:
        spec = properties[key]
        lines.append(f"| `{key}` | {'yes' if key in REQUIRED else 'no'} | {spec['title']} | {spec['description']} |")
    return lines


def _settings_table(kind: str) -> list[str]:
    """The settings of one adapter kind: the keys its module declares, described by the schema."""
    adapter = import_module(f"medseg.data.adapters.{kind}")
    properties = load_schema()["$defs"][kind]["properties"]
    unless = " (not with `msd: true`)" if hasattr(adapter, "MSD_SETTINGS") else ""
    lines = [f"`{kind}` settings:", "", "| key | required | meaning |", "|---|---|---|"]
    for key in (*adapter.REQUIRED_SETTINGS, *adapter.OPTIONAL_SETTINGS):
        required = f"yes{unless}" if key in adapter.REQUIRED_SETTINGS else "no"
        lines.append(f"| `{key}` | {required} | {_description(properties[key])} |")
    return lines


def fields_markdown() -> str:
    """Markdown tables of every top-level field and, per adapter kind, every settings key."""
    lines = _fields_table()
    for kind in ADAPTER_KINDS:
        lines += ["", *_settings_table(kind)]
    return "\n".join(lines) + "\n"
