"""Is the raw data the dataset its alias names? Checked by ``medseg ingest`` before a case is read.

- The phantom written by ``medseg sample`` is recognised by its mark (``"medseg_synthetic": true`` or the
  synthetic notice in a ``dataset.json`` description, or ``SYNTHETIC.txt`` holding the notice, at the raw
  root or in a folder one level below). It is ingested only under an entry with ``synthetic: true``
  (``sample``), and such an entry ingests nothing else: real data is never labelled synthetic, and the
  phantom never trains under a real dataset's name.
- An MSD ``dataset.json`` must carry the entry's label map: the names ``settings.msd_labels`` gives
  (compared ignoring case and surrounding spaces) and, where ``mask_values`` is identity, the class
  numbers of ``labels``. Another Decathlon task under the wrong alias is refused here; other layouts
  are held to their entry by the adapters (no file matching the globs, or a mask value outside the
  label map, is an error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.data.cases import checked_path
from medseg.data.registry import DatasetSpec
from medseg.data.sample import SYNTHETIC_FILE, SYNTHETIC_KEY, SYNTHETIC_NOTICE
from medseg.errors import MedsegError

LISTING = "dataset.json"


def _marked_listing(listing: Path) -> bool:
    """``dataset.json`` carries the phantom's field or notice (an unreadable one is the reader's to report)."""
    try:
        meta = json.loads(listing.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    return meta.get(SYNTHETIC_KEY) is True or SYNTHETIC_NOTICE in str(meta.get("description", ""))


def _marked_file(notice: Path) -> bool:
    try:
        with notice.open(encoding="utf-8", errors="replace") as handle:
            return SYNTHETIC_NOTICE in handle.read(4096)
    except OSError:
        return False


def _folders(raw_dir: Path) -> list[Path]:
    """The root and each folder one level below that holds a ``dataset.json`` or ``SYNTHETIC.txt``; a
    folder that links out of the root is refused, naming it."""
    below = sorted({path.parent for name in (LISTING, SYNTHETIC_FILE) for path in raw_dir.glob(f"*/{name}")})
    for folder in below:
        checked_path(raw_dir, folder)
    return [raw_dir, *below]


def synthetic_mark(raw_dir: Path) -> Path | None:
    """The file that marks ``raw_dir`` as the phantom written by ``medseg sample``, or None."""
    for folder in _folders(raw_dir):
        for name, marked in ((LISTING, _marked_listing), (SYNTHETIC_FILE, _marked_file)):
            path = folder / name
            if path.is_file() and marked(checked_path(raw_dir, path)):
                return path
    return None


def check_synthetic(spec: DatasetSpec, raw_dir: Path) -> None:
    """The phantom only under a ``synthetic: true`` entry, and such an entry only for the phantom."""
    mark = synthetic_mark(raw_dir)
    if mark is not None and not spec.synthetic:
        raise MedsegError(
            f"is the synthetic phantom written by `medseg sample` (marked by {mark.relative_to(raw_dir)}), not "
            f"dataset '{spec.alias}'; it can only be ingested as `sample` (an entry with synthetic: true)", raw_dir)
    if mark is None and spec.synthetic:
        raise MedsegError(
            f"is not the synthetic phantom written by `medseg sample` (no {SYNTHETIC_KEY} mark in {LISTING}, no "
            f"{SYNTHETIC_FILE}), and dataset '{spec.alias}' is synthetic: true; ingest real data under its own "
            "alias", raw_dir)


def _shown(labels: dict[int, str]) -> str:
    return "{" + ", ".join(f"{key}: {name}" for key, name in sorted(labels.items())) + "}"


def _normal(labels: dict[Any, Any]) -> dict[int, str]:
    return {int(key): " ".join(str(name).split()).lower() for key, name in labels.items()}


def check_msd_labels(found: dict[int, str], spec: DatasetSpec, listing: Path) -> None:
    """The label map of an MSD ``dataset.json`` against the entry of the alias it is ingested as."""
    expected = spec.settings.get("msd_labels")
    if expected is not None and _normal(found) != _normal(expected):
        wanted = {int(key): str(name) for key, name in expected.items()}
        raise MedsegError(f"labels are {_shown(found)}, but dataset '{spec.alias}' expects {_shown(wanted)} "
                          "(settings.msd_labels); ingest this dataset under its own alias", listing)
    if spec.mask_values in (None, "identity") and sorted(found) != sorted(spec.labels):
        raise MedsegError(f"class numbers in 'labels' are {sorted(found)}, but dataset '{spec.alias}' expects "
                          f"{sorted(spec.labels)} ({_shown(spec.labels)}); ingest this dataset under its own alias",
                          listing)
