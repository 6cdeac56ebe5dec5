"""The dataset registry: one YAML file per dataset (``medseg/data/registry/<alias>.yaml``).

Each entry states what a user needs to fetch the data and what the adapter needs to read it as
downloaded: citation, licence, download page, modality, the expected raw layout, the adapter kind
and its settings (globs, pairing rule), the mask value rule and label map, the patient-id rule and
the slice axis. More entries can live in folders listed in ``ingest.extra_registries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import MedsegError

ADAPTER_KINDS = ("paired_volumes", "dicom_series", "image_mask_2d", "unlabeled_volumes")
USES = ("finetune", "pretrain")
REQUIRED = ("alias", "name", "description", "citation", "licence", "download", "modality", "anatomy",
            "use", "adapter", "layout", "settings")


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


def _parse(entry: dict[str, Any], source: Path) -> DatasetSpec:
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise MedsegError(f"registry entry lacks {missing}", source)
    if entry["adapter"] not in ADAPTER_KINDS:
        raise MedsegError(f"unknown adapter '{entry['adapter']}'; known: {list(ADAPTER_KINDS)}", source)
    if entry["use"] not in USES:
        raise MedsegError(f"unknown use '{entry['use']}'; known: {list(USES)}", source)
    known = set(DatasetSpec.__dataclass_fields__)
    unknown = sorted(set(entry) - known)
    if unknown:
        raise MedsegError(f"unknown registry fields {unknown}", source)
    if "labels" in entry:
        entry = {**entry, "labels": {int(k): str(v) for k, v in entry["labels"].items()}}
    return DatasetSpec(**entry)


def _entries(folder: Any) -> list[tuple[Path, str]]:
    return sorted((Path(str(item)), item.read_text()) for item in folder.iterdir()
                  if item.name.endswith(".yaml"))


def load_registry(extra_dirs: list[str | Path] | None = None) -> dict[str, DatasetSpec]:
    """All registered datasets by alias: the built-in entries plus those in ``extra_dirs``."""
    sources = _entries(resources.files("medseg.data") / "registry")
    for folder in extra_dirs or []:
        if not Path(folder).is_dir():
            raise MedsegError("registry folder not found", folder)
        sources += _entries(Path(folder))
    registry: dict[str, DatasetSpec] = {}
    for path, text in sources:
        try:
            entry = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", path) from exc
        spec = _parse(entry, path)
        if spec.alias != path.stem:
            raise MedsegError(f"alias '{spec.alias}' must equal the file name", path)
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

Manifest columns: `row` (index into the arrays), `dataset`, `patient`, `case`, `image_file`, `label_file`
(relative to the raw root; several masks joined by `;`), `slice_index`, `split` (train/val/test, per
patient, or per image where a dataset has no patient ids: see `grouping` in `ingest.json`), `fewshot`
(train/val for the 5-shot set, else empty), `height`, `width`, `intensity_mean`, `intensity_std`,
`mask_fraction`, `labels_present`.

## Registered datasets

"""
