"""Reader for the Medical Segmentation Decathlon raw layout (``dataset.json`` + image/label pairs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.data.cases import resolve_inside
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
    try:
        meta = json.loads(listing.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid JSON ({exc})", listing) from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        raise MedsegError("no 'training' list of image/label pairs", listing)
    if not isinstance(meta.get("labels"), dict):
        raise MedsegError("no 'labels' map", listing)
    return meta


def read_msd_pairs(raw_dir: str | Path) -> tuple[list[CasePair], dict[int, str]]:
    """All training pairs of an MSD-style dataset and its label map; each case is one patient."""
    raw_dir = Path(raw_dir)
    meta = read_dataset_json(raw_dir)
    listing = raw_dir / "dataset.json"
    pairs = []
    for entry in meta["training"]:
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise MedsegError(f"training entry without image/label: {entry!r}", listing)
        image = resolve_inside(raw_dir, entry["image"], listing)
        label = resolve_inside(raw_dir, entry["label"], listing)
        for path, role in ((image, "image"), (label, "label")):
            if not path.is_file():
                raise MedsegError(f"{role} file listed in dataset.json is missing", path)
        case_id = _case_id(entry["image"])
        pairs.append(CasePair(case_id=case_id, patient_id=case_id, image=image, label=label))
    if not pairs:
        raise MedsegError("dataset.json lists no training cases", listing)
    labels = {int(k): str(v) for k, v in meta["labels"].items()}
    return pairs, labels
