"""Paired volume files (NIfTI, MHA, NRRD): MSD ``dataset.json`` pairs, or an image glob with a
regex rule that derives each label path (parallel folders, suffix or template names, BIDS paths).

Settings: ``msd: true`` (``dataset.json`` at the root or in the one task folder below it, its label map
checked against ``msd_labels`` and the entry's ``labels`` by ``medseg.data.identity``); or ``images``
(glob), ``exclude`` (name globs), ``label: {regex, replace}`` or ``label: {first: [{regex, replace}, ...]}``
(the first rule that applies and names an existing file, e.g. a site whose label suffix is spelled
differently, or the lowest-numbered rater), and ``unlabeled: skip`` to leave out images that have no
label file (datasets where only some subjects were annotated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import Case, case_for, checked_path, derive, find_images, first_existing
from medseg.data.identity import check_msd_labels
from medseg.data.labels import map_mask
from medseg.data.msd import read_msd_pairs
from medseg.data.registry import DatasetSpec, check_choice, check_globs, check_keys, check_pairing, check_rule, expect
from medseg.data.volumes import check_same_grid, read_volume
from medseg.errors import MedsegError

REQUIRED_SETTINGS = ("images", "label")
OPTIONAL_SETTINGS = ("exclude", "unlabeled", "one_case_per_patient", "msd", "msd_labels")
MSD_SETTINGS = ("msd", "one_case_per_patient", "msd_labels")  # the MSD form: pairs come from dataset.json
LABEL_RULES = {"first": ("first",), "regex": ("regex", "replace"), "replace": ("regex", "replace")}


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings or label rules with unknown or missing keys (registry parsing)."""
    if isinstance(settings, dict) and settings.get("msd"):
        check_keys(settings, ("msd",), MSD_SETTINGS, "settings (with msd: true)")
    else:
        check_keys(settings, REQUIRED_SETTINGS, OPTIONAL_SETTINGS, "settings")
        check_globs(settings, "images")
        if check_rule(settings["label"], LABEL_RULES, "settings.label") == "first":
            for index, rule in enumerate(expect(settings["label"]["first"], list, "settings.label.first")):
                check_pairing(rule, f"settings.label.first[{index}]")
        else:
            check_pairing(settings["label"], "settings.label")
    check_choice(settings, "msd", (True, False))
    check_choice(settings, "unlabeled", ("skip",))
    check_choice(settings, "one_case_per_patient", (True, False))
    if "msd_labels" in settings:
        _check_msd_labels(settings)


def _check_msd_labels(settings: dict[str, Any]) -> None:
    """``msd_labels``: with ``msd: true``, class numbers -> the names the task's ``dataset.json`` gives them."""
    value = settings["msd_labels"]
    if not settings.get("msd"):
        raise MedsegError("settings.msd_labels goes only with msd: true")
    if not isinstance(value, dict) or not value or not all(
            str(key).isdigit() and isinstance(name, str) and name.strip() for key, name in value.items()):
        raise MedsegError(f"settings.msd_labels must map class numbers to names, not {value!r}")


def _msd_root(raw_dir: Path) -> Path:
    """The folder holding ``dataset.json``: the root, or the one task folder a download unpacks into
    (which must not lead out of the root)."""
    if (raw_dir / "dataset.json").is_file():
        return raw_dir
    nested = sorted(raw_dir.glob("*/dataset.json"))
    return checked_path(raw_dir, nested[0].parent) if len(nested) == 1 else raw_dir


def _label_of(image: Path, raw_dir: Path, rule: dict[str, Any]) -> Path | None:
    """The label path of an image (it may not exist); None when no ``first`` rule names a file."""
    if "first" in rule:
        return first_existing(image, raw_dir, rule["first"])
    return derive(image, raw_dir, rule["regex"], rule["replace"])


def discover(raw_dir: Path, spec: DatasetSpec) -> list[Case]:
    settings = spec.settings
    if settings.get("msd"):
        root = _msd_root(raw_dir)
        pairs, labels = read_msd_pairs(root)
        check_msd_labels(labels, spec, root / "dataset.json")
        return [Case(p.case_id, p.patient_id, p.image, (p.label,), root=raw_dir) for p in pairs]
    cases = []
    for image in find_images(raw_dir, settings, spec.layout):
        label = _label_of(image, raw_dir, settings["label"])
        if label is None or not label.is_file():
            if settings.get("unlabeled") == "skip":
                continue
            expected = label.relative_to(raw_dir.resolve()) if label else "a file named by a 'first' rule"
            raise MedsegError(f"image has no label file (expected {expected})", image)
        cases.append(case_for(image, raw_dir, spec.patient_id, (label,)))
    return cases


def load(case: Case, spec: DatasetSpec, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    image = read_volume(case.image, max_voxels)
    label = read_volume(case.masks[0], max_voxels)
    check_same_grid(image, label, case.masks[0])
    return image.array, map_mask(label.array, spec.mask_values, spec.labels, case.masks[0])
