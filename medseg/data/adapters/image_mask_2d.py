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

from pathlib import Path

import numpy as np

from medseg.data.cases import Case, case_for, derive, find_images, strip_suffixes
from medseg.data.labels import map_mask
from medseg.data.registry import DatasetSpec
from medseg.data.volumes import read_2d
from medseg.errors import MedsegError


def _suffix_masks(image: Path, suffix: str) -> list[Path]:
    stem = strip_suffixes(image.name)
    return sorted(p for p in image.parent.glob(f"{stem}{suffix}*") if p.is_file() and p != image)


def _existing(image: Path, raw_dir: Path, rule: dict) -> list[Path]:
    """The masks of one ``first`` option when its regexes apply and all its files exist, else []."""
    try:
        masks = _masks_of(image, raw_dir, rule)
    except MedsegError:
        return []
    return masks if masks and all(m.is_file() for m in masks) else []


def _masks_of(image: Path, raw_dir: Path, rule: dict) -> list[Path]:
    if "suffix" in rule:
        return _suffix_masks(image, rule["suffix"])
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
