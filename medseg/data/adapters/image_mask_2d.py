"""2D image + mask files (PNG, TIFF, BMP, ...).

Settings: ``images`` (glob), ``exclude`` (name globs), and a mask rule ``masks``:
``{suffix: "_mask"}`` (every ``<stem>_mask*`` file beside the image, merged with OR),
``{regex, replace}`` (one mask whose path derives from the image's: parallel folder, other suffix),
or ``{union: [{regex, replace}, ...]}`` (several mask folders merged, e.g. left + right lung), or
``{first: [rule, ...]}`` (the first of these rules whose regexes apply and whose files all exist: one
dataset with differently named masks per source). ``unlabeled: skip`` leaves out images without a mask.
Masks pass through the dataset's ``mask_values`` rule (``threshold`` for interpolated masks).
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import Case, RuleMismatch, case_for, checked_path, derive, find_images, strip_suffixes
from medseg.data.labels import map_mask
from medseg.data.registry import (
    DatasetSpec,
    check_choice,
    check_globs,
    check_keys,
    check_pairing,
    check_rule,
    expect,
)
from medseg.data.volumes import read_2d
from medseg.errors import MedsegError

REQUIRED_SETTINGS = ("images", "masks")
OPTIONAL_SETTINGS = ("exclude", "unlabeled", "one_case_per_patient")
MASK_RULES = {"suffix": ("suffix",), "union": ("union",), "first": ("first",), "regex": ("regex", "replace"),
              "replace": ("regex", "replace")}


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings or mask rules with unknown or missing keys (registry parsing)."""
    check_keys(settings, REQUIRED_SETTINGS, OPTIONAL_SETTINGS, "settings")
    check_globs(settings, "images")
    check_choice(settings, "unlabeled", ("skip",))
    check_choice(settings, "one_case_per_patient", (True, False))
    _check_mask_rule(settings["masks"], "settings.masks")


def _check_mask_rule(rule: Any, where: str) -> None:
    form = check_rule(rule, MASK_RULES, where)
    if form == "suffix":
        expect(rule["suffix"], str, f"{where}.suffix")
    elif form in ("union", "first"):
        for index, option in enumerate(expect(rule[form], list, f"{where}.{form}")):
            if form == "union":
                check_pairing(option, f"{where}.union[{index}]")
            else:
                _check_mask_rule(option, f"{where}.first[{index}]")
    else:
        check_pairing(rule, where)


def _suffix_masks(image: Path, raw_dir: Path, suffix: str) -> list[Path]:
    """Files beside the image named ``<stem><suffix>*``, each checked to stay inside the root."""
    pattern = glob.escape(f"{strip_suffixes(image.name)}{suffix}") + "*"
    found = (checked_path(raw_dir, p) for p in sorted(image.parent.glob(pattern)) if p.is_file())
    return [p for p in found if p != image]


def _existing(image: Path, raw_dir: Path, rule: dict) -> list[Path]:
    """The masks of one ``first`` option when its regexes apply and all its files exist, else []
    (a path that leaves the dataset root is still an error)."""
    try:
        masks = _masks_of(image, raw_dir, rule)
    except RuleMismatch:
        return []
    return masks if masks and all(m.is_file() for m in masks) else []


def _masks_of(image: Path, raw_dir: Path, rule: dict) -> list[Path]:
    if "suffix" in rule:
        return _suffix_masks(image, raw_dir, rule["suffix"])
    if "first" in rule:
        return next((masks for option in rule["first"] if (masks := _existing(image, raw_dir, option))), [])
    rules = rule.get("union", [rule])
    return [derive(image, raw_dir, r["regex"], r["replace"]) for r in rules]


def discover(raw_dir: Path, spec: DatasetSpec) -> list[Case]:
    settings = spec.settings
    cases = []
    for image in find_images(raw_dir, settings, spec.layout):
        masks = _masks_of(image, raw_dir, settings["masks"])
        missing = [m for m in masks if not m.is_file()]
        if not masks or missing:
            if settings.get("unlabeled") == "skip":
                continue
            expected = missing[0].relative_to(raw_dir.resolve()) if missing else "a mask beside it"
            raise MedsegError(f"image has no mask (expected {expected})", image)
        cases.append(case_for(image, raw_dir, spec.patient_id, tuple(masks)))
    return cases


def load(case: Case, spec: DatasetSpec, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    image = read_2d(case.image, max_voxels)
    merged = np.zeros(image.shape, dtype=np.uint8)
    for path in case.masks:
        mask = read_2d(path, max_voxels)
        if mask.shape != image.shape:
            raise MedsegError(f"mask shape {mask.shape} differs from image shape {image.shape}", path)
        merged = np.maximum(merged, map_mask(mask, spec.mask_values, spec.labels, path))
    return image[..., None], merged[..., None]
