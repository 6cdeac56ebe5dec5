"""Checks of ``ingest.datasets`` before anything is ingested (``medseg datasets --check-params``, the
``datasets`` stage of ``dvc repro``): every alias is registered and has its raw folder, so a wrong alias or
a missing download is one line naming the alias and what to do, not DVC's "No such file or directory".

The stage also writes the entry each dataset's ingest reads (``data/datasets/<alias>.json``); the ingest
stage depends on that file, so editing an entry (built-in or custom) re-runs that dataset's ingest only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from medseg.data.registry import CUSTOM_REGISTRY, ENTRY_DOCS, DatasetSpec
from medseg.data.registry_schema import json_keys
from medseg.errors import MedsegError
from medseg.outputs import output_dir


def registered(aliases: Sequence[str], registry: dict[str, DatasetSpec], params_file: str | Path) -> list[DatasetSpec]:
    """The entries of ``aliases``; an error naming the unknown aliases and the known ones otherwise."""
    unknown = [alias for alias in aliases if alias not in registry]
    if unknown:
        names = ", ".join(f"'{alias}'" for alias in unknown)
        raise MedsegError(f"ingest.datasets: {names} {'is' if len(unknown) == 1 else 'are'} not registered; known: "
                          f"{', '.join(sorted(registry))}. A dataset of your own needs an <alias>.yaml entry in "
                          f"{CUSTOM_REGISTRY}/ (listed in ingest.extra_registries): see {ENTRY_DOCS}", params_file)
    return [registry[alias] for alias in dict.fromkeys(aliases)]


def _fetch_advice(spec: DatasetSpec, raw_root: Path) -> str:
    folder, pointer = raw_root / spec.alias, raw_root / f"{spec.alias}.dvc"
    if pointer.is_file():
        return f"raw folder of dataset '{spec.alias}' not found, but DVC tracks it: run `dvc pull {pointer}`"
    return (f"raw folder of dataset '{spec.alias}' not found: download it from {spec.download}, unpack it "
            f"unchanged into {folder}/, then run `dvc add {folder}` (data/README.md has the steps)")


def check_raw_folders(specs: Sequence[DatasetSpec], raw_root: Path) -> None:
    """Every dataset's ``<raw_root>/<alias>/`` folder exists (synthetic ones are written by `medseg sample`)."""
    missing = [spec for spec in specs if not spec.synthetic and not (raw_root / spec.alias).is_dir()]
    if len(missing) == 1:
        raise MedsegError(_fetch_advice(missing[0], raw_root), raw_root / missing[0].alias)
    if missing:
        raise MedsegError(f"raw folders of {', '.join(s.alias for s in missing)} not found: download each, unpack "
                          f"it unchanged into {raw_root}/<alias>/ and run `dvc add {raw_root}/<alias>` (data/README.md "
                          "says where to get each)", raw_root)


def untracked_registries(extra_dirs: Sequence[str | Path]) -> list[str]:
    """Extra registry folders outside ``registry/`` (the one the ``datasets`` stage depends on)."""
    tracked = Path(CUSTOM_REGISTRY).resolve()
    return [str(folder) for folder in extra_dirs if not Path(folder).resolve().is_relative_to(tracked)]


def entry_json(spec: DatasetSpec) -> str:
    """An entry as parsed (defaults filled in), as deterministic JSON text."""
    return json.dumps(json_keys(asdict(spec)), indent=2, sort_keys=True, default=str) + "\n"


def write_entries(specs: Sequence[DatasetSpec], out: str | Path, inputs: Sequence[str | Path | None]) -> None:
    """``<out>/<alias>.json`` for every dataset, written atomically (``medseg datasets`` owns ``out``)."""
    with output_dir("datasets", out, inputs) as tmp:
        for spec in specs:
            (tmp / f"{spec.alias}.json").write_text(entry_json(spec))


def check_class_choices(choices: dict[str, list[str]], specs: Sequence[DatasetSpec], params_file: str | Path) -> None:
    """``finetune.classes`` names datasets of ``ingest.datasets`` and classes of their label maps (checked
    here, before anything is ingested, rather than when training starts)."""
    by_alias = {spec.alias: spec for spec in specs}
    for alias, names in choices.items():
        if alias not in by_alias:
            raise MedsegError(f"finetune.classes.{alias}: '{alias}' is not in ingest.datasets", params_file)
        known = [name for value, name in sorted(by_alias[alias].labels.items()) if value > 0]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise MedsegError(f"finetune.classes.{alias}: {unknown} not among the dataset's classes {known}",
                              params_file)


def check_pretraining_datasets(params: dict, params_file: str | Path) -> None:
    """Each pretraining step that runs (backbones listed) reads only datasets that ``ingest.datasets`` ingests."""
    ingested = set(params["ingest"]["datasets"])
    for step in ("pretrain_mae", "pretrain_sup"):
        settings = params.get(step) or {}
        missing = [alias for alias in settings.get("datasets", []) if alias not in ingested]
        if settings.get("backbones") and missing:
            raise MedsegError(f"{step}.datasets: {', '.join(missing)} not in ingest.datasets (pretraining reads "
                              f"ingested datasets: ingest them too, or set {step}.backbones: [] to skip it)",
                              params_file)
