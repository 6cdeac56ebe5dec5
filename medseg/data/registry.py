"""The dataset registry: one YAML file per dataset (``medseg/data/registry/<alias>.yaml``).

Each entry states what a user needs to fetch the data and what the adapter needs to read it as
downloaded: citation, licence, download page, modality, the expected raw layout, the adapter kind
and its settings (globs, pairing rule), the mask value rule and label map, the patient-id rule and
the slice axis. More entries can live in folders listed in ``ingest.extra_registries``; their aliases
may not repeat a built-in or another extra alias. Settings are checked when an entry is parsed
against the keys its adapter kind declares (``REQUIRED_SETTINGS``, ``OPTIONAL_SETTINGS`` and
``check_settings`` in ``medseg/data/adapters/<kind>.py``). ``registry.schema.json`` publishes the
same format as a JSON schema (``medseg.data.registry_schema``); README "Custom dataset entry" documents it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import import_module, resources
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import MedsegError
from medseg.names import check_name

ADAPTER_KINDS = ("paired_volumes", "dicom_series", "image_mask_2d", "unlabeled_volumes")
USES = ("finetune", "pretrain")
REQUIRED = ("alias", "name", "description", "citation", "licence", "download", "modality", "anatomy",
            "use", "adapter", "layout", "settings")
TEXT_FIELDS = ("name", "description", "citation", "licence", "download", "modality", "anatomy", "layout")
MASK_VALUE_RULES = {"map": dict, "ranges": list, "threshold": (int, float)}
CUSTOM_REGISTRY = "registry"  # the conventional folder of custom entries: a dependency of the `datasets` stage
ENTRY_DOCS = "README 'Custom dataset entry' (or `medseg datasets --fields`)"


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry."""

    alias: str
    name: str
    description: str
    citation: str
    licence: str
    download: str
    modality: str
    anatomy: str
    use: str
    adapter: str
    layout: str
    settings: dict[str, Any]
    labels: dict[int, str] = field(default_factory=lambda: {0: "background", 1: "foreground"})
    mask_values: Any = "identity"
    patient_id: str | None = None
    slice_axis: int = 2
    synthetic: bool = False

    @property
    def labeled(self) -> bool:
        return self.adapter != "unlabeled_volumes"

    @property
    def grouping(self) -> str:
        """Split unit: ``patient`` when the dataset has patient ids, else ``image``."""
        return "patient" if self.patient_id or self.settings.get("one_case_per_patient") else "image"


def check_keys(mapping: Any, required: Sequence[str], optional: Iterable[str], where: str) -> dict[str, Any]:
    """``mapping`` when it is a mapping with every ``required`` key and no key outside ``required`` and
    ``optional``; otherwise an error naming the unknown or missing keys and the known ones (the caller
    adds the registry file)."""
    known = sorted({*required, *optional})
    if not isinstance(mapping, dict):
        raise MedsegError(f"{where} must be a mapping with the keys {known}, not {mapping!r}")
    unknown = sorted(str(key) for key in mapping if key not in known)
    missing = [key for key in required if key not in mapping]
    problems = [_keys("unknown", unknown)] * bool(unknown) + [_keys("missing", missing)] * bool(missing)
    if problems:
        raise MedsegError(f"{where}: {'; '.join(problems)}; known keys: {', '.join(known)}")
    return mapping


def _keys(what: str, keys: list[str]) -> str:
    return f"{what} key{'s' * (len(keys) > 1)} {', '.join(map(repr, keys))}"


def check_rule(rule: Any, forms: dict[str, Sequence[str]], where: str) -> str:
    """The form of a rule mapping: the first of its keys that names a form in ``forms`` (key -> the keys
    of that form), with its keys checked; an error naming the unknown keys and the forms otherwise."""
    if isinstance(rule, dict):
        form = next((key for key in forms if key in rule), None)
        if form is not None:
            check_keys(rule, forms[form], (), where)
            return form
    shapes = " or ".join(sorted({"{" + ", ".join(keys) + "}" for keys in forms.values()}))
    known = {key for keys in forms.values() for key in keys}
    unknown = sorted(str(key) for key in rule if key not in known) if isinstance(rule, dict) else []
    found = _keys("unknown", unknown) if unknown else repr(rule)
    raise MedsegError(f"{where}: {found}; known rule forms: {shapes}")


def check_pairing(rule: Any, where: str) -> dict[str, Any]:
    """A ``{regex, replace}`` rule: both strings, the regex valid."""
    check_keys(rule, ("regex", "replace"), (), where)
    expect(rule["replace"], str, f"{where}.replace")
    check_regex(rule["regex"], f"{where}.regex")
    return rule


def check_regex(value: Any, where: str) -> None:
    """A string that compiles as a regular expression."""
    try:
        re.compile(expect(value, str, where))
    except re.error as exc:
        raise MedsegError(f"{where} {value!r} is not a valid regular expression ({exc})") from exc


def expect(value: Any, kind: type, where: str) -> Any:
    """``value`` when it is a ``kind``, else an error naming ``where``."""
    if not isinstance(value, kind):
        raise MedsegError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def check_choice(settings: dict[str, Any], key: str, choices: Sequence[Any]) -> None:
    """Setting ``key`` (when present) is one of ``choices``."""
    value = settings.get(key)
    if key in settings and not any(value == c and type(value) is type(c) for c in choices):
        raise MedsegError(f"settings.{key} must be one of {list(choices)}, not {value!r}")


def check_globs(settings: dict[str, Any], *keys: str) -> None:
    """The glob settings ``keys`` (when present) are strings, ``exclude`` (when present) a list of them."""
    for key in keys:
        if key in settings:
            expect(settings[key], str, f"settings.{key}")
    for index, pattern in enumerate(expect(settings.get("exclude", []), list, "settings.exclude")):
        expect(pattern, str, f"settings.exclude[{index}]")


def _check_settings(entry: dict[str, Any], source: Path) -> None:
    """The entry's adapter settings against the keys its adapter kind declares."""
    adapter = import_module(f"medseg.data.adapters.{entry['adapter']}")
    try:
        adapter.check_settings(entry["settings"])
    except MedsegError as exc:
        raise MedsegError(f"dataset '{entry.get('alias')}' ({entry['adapter']}): {exc.problem}", source) from exc


def _labels(labels: Any, source: Path) -> dict[int, str]:
    if not isinstance(labels, dict):
        raise MedsegError(f"labels must map class numbers to names, not {labels!r}", source)
    try:
        return {int(k): str(v) for k, v in labels.items()}
    except (TypeError, ValueError) as exc:
        raise MedsegError(f"label keys must be whole numbers, got {sorted(map(str, labels))}", source) from exc


def _missing_fields(missing: list[str]) -> str:
    """The missing fields, each with what it is for (the schema's titles), and where they are documented."""
    from medseg.data.registry_schema import field_titles

    titles = field_titles()
    named = ", ".join(f"{key} ({titles.get(key, 'see the docs')})" for key in missing)
    return f"missing field{'s' * (len(missing) > 1)}: {named}; {ENTRY_DOCS} documents every field"


def _check_mask_values(rule: Any) -> None:
    """``identity`` (or null), or a one-key mapping ``map``/``ranges``/``threshold`` of the right type."""
    if rule is None or rule == "identity":
        return
    form = next(iter(rule), None) if isinstance(rule, dict) and len(rule) == 1 else None
    kind = MASK_VALUE_RULES.get(str(form))
    if kind is None or not isinstance(rule[form], kind) or isinstance(rule[form], bool):
        raise MedsegError(f"mask_values must be identity, {{map: {{raw: class}}}}, {{ranges: [[low, high, class], "
                          f"...]}} or {{threshold: t}}, not {rule!r}")


def _check_fields(entry: dict[str, Any]) -> None:
    """The top-level fields' types and values (the adapter settings are checked by the adapter)."""
    check_name(entry["alias"], "alias")  # it names data/raw/<alias> and every run of the dataset
    for key in TEXT_FIELDS:
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise MedsegError(f"{key} must be non-empty text, not {entry[key]!r}")
    if entry["adapter"] not in ADAPTER_KINDS:
        raise MedsegError(f"unknown adapter {entry['adapter']!r}; known: {list(ADAPTER_KINDS)}")
    if entry["use"] not in USES:
        raise MedsegError(f"unknown use {entry['use']!r}; known: {list(USES)}")
    unknown = sorted(map(str, set(entry) - set(DatasetSpec.__dataclass_fields__)))
    if unknown:
        raise MedsegError(f"unknown registry fields {unknown}; known: {', '.join(DatasetSpec.__dataclass_fields__)}")
    axis = entry.get("slice_axis", 2)
    if isinstance(axis, bool) or axis not in (0, 1, 2):
        raise MedsegError(f"slice_axis must be 0, 1 or 2, not {axis!r}")
    if not isinstance(entry.get("synthetic", False), bool):
        raise MedsegError(f"synthetic must be true or false, not {entry['synthetic']!r}")
    if entry.get("patient_id") is not None:
        check_regex(entry["patient_id"], "patient_id")
    _check_mask_values(entry.get("mask_values"))


def _parse(entry: Any, source: Path) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise MedsegError("registry entry is not a mapping of fields", source)
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise MedsegError(_missing_fields(missing), source)
    try:
        _check_fields(entry)
    except MedsegError as exc:
        raise MedsegError(exc.problem, source) from None
    _check_settings(entry, source)
    if "labels" in entry:
        entry = {**entry, "labels": _labels(entry["labels"], source)}
    return DatasetSpec(**entry)


def _entries(folder: Any) -> list[tuple[Path, str]]:
    return sorted((Path(str(item)), item.read_text()) for item in folder.iterdir()
                  if item.name.endswith(".yaml"))


def _sources(extra_dirs: list[str | Path] | None) -> list[tuple[Path, str, bool]]:
    """(file, text, built-in) of every entry; a file listed twice (the same folder twice) counts once."""
    sources = [(path, text, True) for path, text in _entries(resources.files("medseg.data") / "registry")]
    for folder in extra_dirs or []:
        if not Path(folder).is_dir():
            raise MedsegError("registry folder not found", folder)
        sources += [(path, text, False) for path, text in _entries(Path(folder))]
    seen: set[Path] = set()
    unique = []
    for path, text, builtin in sources:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append((path, text, builtin))
    return unique


def read_entry(path: Path, text: str) -> Any:
    """An entry file's YAML (an error naming the file when it is not valid YAML)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", path) from exc


def parse_entry(path: Path, entry: Any) -> DatasetSpec:
    """One entry, checked; its alias must equal the file name."""
    spec = _parse(entry, path)
    if spec.alias != path.stem:
        raise MedsegError(f"alias '{spec.alias}' must equal the file name ({path.stem})", path)
    return spec


def builtin_entry(alias: str) -> Path | None:
    """The built-in entry file of ``alias``, when there is one."""
    path = Path(str(resources.files("medseg.data") / "registry" / f"{alias}.yaml"))
    return path if path.is_file() else None


def load_registry(extra_dirs: list[str | Path] | None = None) -> dict[str, DatasetSpec]:
    """All registered datasets by alias: the built-in entries plus those in ``extra_dirs``; an extra
    entry may not reuse an alias (of a built-in dataset or of another extra entry)."""
    registry: dict[str, DatasetSpec] = {}
    origins: dict[str, tuple[Path, bool]] = {}
    for path, text, builtin in _sources(extra_dirs):
        spec = parse_entry(path, read_entry(path, text))
        if spec.alias in origins:
            other, other_builtin = origins[spec.alias]
            what = "a built-in dataset" if other_builtin else f"the extra entry {other}"
            raise MedsegError(f"alias '{spec.alias}' is already taken by {what}; rename this entry", path)
        origins[spec.alias] = (path, builtin)
        registry[spec.alias] = spec
    return registry


def get_spec(alias: str, extra_dirs: list[str | Path] | None = None) -> DatasetSpec:
    registry = load_registry(extra_dirs)
    if alias not in registry:
        raise MedsegError(f"dataset '{alias}' is not registered; known: {', '.join(sorted(registry))}")
    return registry[alias]


def markdown_table(registry: dict[str, DatasetSpec]) -> str:
    """The registry as a table a user can scan (``medseg datasets``)."""
    lines = ["| alias | study name | modality | anatomy | use | adapter | classes | split by | licence |",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec in sorted(registry.values(), key=lambda s: (s.use, s.modality, s.alias)):
        classes = ", ".join(v for k, v in sorted(spec.labels.items()) if k) if spec.labeled else "(unlabeled)"
        lines.append(f"| {spec.alias} | {spec.name} | {spec.modality} | {spec.anatomy} | {spec.use} | "
                     f"{spec.adapter} | {classes} | {spec.grouping} | {spec.licence} |")
    return "\n".join(lines) + "\n"


def readme_markdown(registry: dict[str, DatasetSpec]) -> str:
    """data/README.md: the dataset table and, per dataset, the download-and-``dvc add`` steps."""
    parts = [README_HEADER, markdown_table(registry), "\n## Per dataset\n"]
    for spec in sorted(registry.values(), key=lambda s: (s.use, s.alias)):
        if spec.synthetic:
            continue
        parts.append(
            f"\n### `{spec.alias}` - {spec.name}\n\n{spec.description}. {spec.modality}, {spec.anatomy}; "
            f"used for {spec.use}.\n\n- Cite: {spec.citation}\n- Terms: {spec.licence}\n\n"
            f"1. Download from {spec.download} and unpack it unchanged into `data/raw/{spec.alias}/`.\n"
            f"2. Expected layout: {spec.layout}\n"
            f"3. `dvc add data/raw/{spec.alias} && git add data/raw/{spec.alias}.dvc data/raw/.gitignore`\n"
            f"4. Add `{spec.alias}` to `ingest.datasets` in params.yaml (protocol tweaks such as a CT window go "
            f"under `ingest.overrides.{spec.alias}`), then `dvc repro`.\n")
    return "".join(parts)


README_HEADER = """# data/

Generated by `medseg datasets --readme data/README.md` from the registry (`medseg/data/registry/`).

- `raw/<alias>/`: a dataset exactly as downloaded (`sample`: written by `medseg sample`). Not in git:
  its `raw/<alias>.dvc` pointer is, and the files go to the DVC cache and remote.
- `processed/<alias>/`: ingested slices (`images.npy`, `masks.npy`: uint8, memory-mappable;
  `manifest.parquet`; `ingest.json`). A DVC output of the `ingest` stage.
- `datasets/<alias>.json`: the registry entry that `ingest` reads for each dataset of `ingest.datasets`, written
  by the `datasets` stage (`medseg datasets --check-params`) after checking that every alias is registered
  and has its raw folder; `ingest` depends on it, so editing an entry re-runs that dataset's ingest.

A dataset of your own: an `<alias>.yaml` entry in `registry/` (listed in `ingest.extra_registries`); README.md,
"Custom dataset entry", documents every field and `medseg datasets --check <file.yaml>` checks one.

Manifest columns: `row` (index into the arrays), `dataset`, `patient`, `case`, `image_file`, `label_file`
(relative to the raw root; several masks joined by `;`), `slice_index`, `split` (train/val/test, per
patient, or per image where a dataset has no patient ids: see `grouping` in `ingest.json`), `fewshot`
(train/val for the 5-shot set, else empty), `height`, `width`, `intensity_mean`, `intensity_std`,
`mask_fraction`, `labels_present`.

## Registered datasets

"""
