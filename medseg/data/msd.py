"""Reader for the Medical Segmentation Decathlon raw layout (``dataset.json`` + image/label pairs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.data.cases import checked_path, printable, resolve_inside
from medseg.errors import MedsegError


@dataclass(frozen=True)
class CasePair:
    """One labeled case: an image volume, its label volume, and the patient it belongs to."""

    case_id: str
    patient_id: str
    image: Path
    label: Path


def _case_id(image_path: str) -> str:
    name = Path(image_path).name
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_dataset_json(raw_dir: Path) -> dict[str, Any]:
    """Parse ``dataset.json`` with clear errors."""
    listing = raw_dir / "dataset.json"
    if not listing.is_file():
        raise MedsegError("missing dataset.json (expected the MSD layout)", listing)
    checked_path(raw_dir, listing)
    try:
        meta = json.loads(listing.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid JSON ({exc})", listing) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        raise MedsegError("no 'training' list of image/label pairs", listing)
    if not isinstance(meta.get("labels"), dict):
        raise MedsegError("no 'labels' map", listing)
    return meta


def _labels(labels: dict[Any, Any], listing: Path) -> dict[int, str]:
    """The label map; its keys must be class numbers (``"0"``, ``"1"``, ...)."""
    bad = [key for key in labels if not (isinstance(key, str) and key.strip().isdigit())]
    if bad:
        raise MedsegError(f"'labels' keys must be class numbers (\"0\", \"1\", ...), got {bad[0]!r}", listing)
    return {int(key): str(name) for key, name in labels.items()}


def _entry_path(entry: dict[str, Any], role: str, raw_dir: Path, listing: Path) -> Path:
    """One file of a training entry: a relative path (UTF-8 text) to an existing file inside the root."""
    value = entry[role]
    if not isinstance(value, str) or not value.strip():
        raise MedsegError(f"training entry {entry!r}: '{role}' must be a file path, not {value!r}", listing)
    if printable(value) != value:
        raise MedsegError(f"training entry {role} {printable(value)!r} is not valid UTF-8", listing)
    path = resolve_inside(raw_dir, value, listing)
    if not path.is_file():
        raise MedsegError(f"{role} file listed in dataset.json is missing", path)
    return path


def _refuse_duplicates(pairs: list[CasePair], raw_dir: Path, listing: Path) -> None:
    """Each image file, label file and case id (image name) may appear in one training entry only."""
    root = raw_dir.resolve()
    for what, key in (("image file", lambda p: p.image.relative_to(root).as_posix()),
                      ("label file", lambda p: p.label.relative_to(root).as_posix()),
                      ("case id", lambda p: p.case_id)):
        seen: set[str] = set()
        for pair in pairs:
            if key(pair) in seen:
                raise MedsegError(f"duplicate training entry: {what} '{key(pair)}' is listed twice", listing)
            seen.add(key(pair))


def read_msd_pairs(raw_dir: str | Path) -> tuple[list[CasePair], dict[int, str]]:
    """All training pairs of an MSD-style dataset and its label map; each case is one patient."""
    raw_dir = Path(raw_dir)
    meta = read_dataset_json(raw_dir)
    listing = raw_dir / "dataset.json"
    labels = _labels(meta["labels"], listing)
    pairs = []
    for entry in meta["training"]:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise MedsegError(f"training entry without image/label: {entry!r}", listing)
        image = _entry_path(entry, "image", raw_dir, listing)
        label = _entry_path(entry, "label", raw_dir, listing)
        case_id = _case_id(entry["image"])
        pairs.append(CasePair(case_id=case_id, patient_id=case_id, image=image, label=label))
    if not pairs:
        raise MedsegError("dataset.json lists no training cases", listing)
    _refuse_duplicates(pairs, raw_dir, listing)
    return pairs, labels
