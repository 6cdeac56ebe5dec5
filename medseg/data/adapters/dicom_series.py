"""DICOM image series (one folder of slice files per case) with a mask in one of four forms.

Settings:

- ``series``: glob of series folders (``Train_Sets/MR/*/T2SPIR/DICOM_anon``); ``exclude``: name globs.
- ``mask``: ``dicom_seg`` (a DICOM-SEG file, or a folder holding one, whose frames reference the
  series' instances), ``png_stack`` (a folder with one PNG per DICOM file, paired in InstanceNumber
  order, CHAOS), ``seg_nrrd`` (a label volume, ``.seg.nrrd``/NRRD/NIfTI/MHA, of any extent, resampled
  onto the series, nearest neighbour) or ``dicom_gt_series`` (a second DICOM series on the same grid).
- ``label: {regex, replace}``: the mask path from the series folder's path (relative to the root).
- ``skip_unmasked: true``: pass over series whose mask is absent instead of failing (Duke: masks
  exist for 100 of 922 patients).
- ``series_list: {file, column, regex, replace, where: {column, regex}}`` with ``series_key: {regex,
  replace}``: an allow-list. Each CSV row (optionally filtered by ``where``) gives a key (``regex``
  searched in the cell, expanded with ``replace``); a series is kept when the key derived the same way
  from its folder path is listed (ProstateX ``image_list.csv``, the Duke file-path mapping).

Mask values go through the registry's ``mask_values`` rule; DICOM-SEG segment k is raw value k.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import Case, derive, find_files, listed_files, patient_of, resolve_inside
from medseg.data.dicom_masks import SliceHeader, png_stack_mask, resampled_mask, scan_series, seg_mask
from medseg.data.labels import map_mask
from medseg.data.registry import (
    DatasetSpec,
    check_choice,
    check_globs,
    check_keys,
    check_pairing,
    check_regex,
    expect,
)
from medseg.data.volumes import Volume, check_same_grid, read_dicom_series
from medseg.errors import MedsegError

MASK_FORMS = ("dicom_seg", "png_stack", "seg_nrrd", "dicom_gt_series")
REQUIRED_SETTINGS = ("series", "mask", "label")
OPTIONAL_SETTINGS = ("exclude", "skip_unmasked", "series_list", "series_key", "one_case_per_patient")
SERIES_LIST = (("file", "column", "regex", "replace"), ("where",))  # required, optional keys


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse settings or rules with unknown or missing keys (registry parsing)."""
    check_keys(settings, REQUIRED_SETTINGS, OPTIONAL_SETTINGS, "settings")
    check_globs(settings, "series")
    check_choice(settings, "mask", MASK_FORMS)
    check_choice(settings, "skip_unmasked", (True, False))
    check_choice(settings, "one_case_per_patient", (True, False))
    check_pairing(settings["label"], "settings.label")
    if ("series_list" in settings) != ("series_key" in settings):
        raise MedsegError("settings: series_list and series_key go together; give both or neither")
    if "series_list" in settings:
        _check_series_list(settings["series_list"])
        check_pairing(settings["series_key"], "settings.series_key")


def _check_series_list(listing: Any) -> None:
    check_keys(listing, *SERIES_LIST, "settings.series_list")
    for key in ("file", "column", "replace"):
        expect(listing[key], str, f"settings.series_list.{key}")
    check_regex(listing["regex"], "settings.series_list.regex")
    if "where" in listing:
        check_keys(listing["where"], ("column", "regex"), (), "settings.series_list.where")
        expect(listing["where"]["column"], str, "settings.series_list.where.column")
        check_regex(listing["where"]["regex"], "settings.series_list.where.regex")


def _key(text: str, rule: dict[str, str]) -> str | None:
    match = re.search(rule["regex"], text)
    return match.expand(rule["replace"]) if match else None


def _listed_keys(raw_dir: Path, listing: dict[str, Any]) -> set[str]:
    """The keys of an allow-list CSV's rows."""
    path = resolve_inside(raw_dir, listing["file"], raw_dir)
    if not path.is_file():
        raise MedsegError("series list file not found", path)
    where = listing.get("where")
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in [listing["column"], *([where["column"]] if where else [])]
                   if c not in (reader.fieldnames or [])]
        if missing:
            raise MedsegError(f"series list lacks columns {missing}", path)
        keys = {key for row in reader
                if not where or re.search(where["regex"], row[where["column"]] or "")
                if (key := _key((row[listing["column"]] or "").strip(), listing)) is not None}
    if not keys:
        raise MedsegError(f"no row of the series list matches {listing['regex']!r}", path)
    return keys


def _allowed(folders: list[Path], raw_dir: Path, settings: dict[str, Any]) -> list[Path]:
    if "series_list" not in settings:
        return folders
    keys = _listed_keys(raw_dir, settings["series_list"])
    root = raw_dir.resolve()
    return [f for f in folders if _key(f.relative_to(root).as_posix(), settings["series_key"]) in keys]


def discover(raw_dir: Path, spec: DatasetSpec) -> list[Case]:
    settings = spec.settings
    found = [p for p in find_files(raw_dir, settings["series"], settings.get("exclude")) if p.is_dir()]
    folders = _allowed(found, raw_dir, settings)
    if not folders:
        raise MedsegError(f"no DICOM series folders match '{settings['series']}' (expected layout: {spec.layout})",
                          raw_dir)
    root, cases = raw_dir.resolve(), []
    for folder in folders:
        mask = derive(folder, raw_dir, settings["label"]["regex"], settings["label"]["replace"])
        if not mask.exists():
            if settings.get("skip_unmasked"):
                continue
            raise MedsegError(f"series has no mask (expected {mask.relative_to(root)})", folder)
        relative = folder.relative_to(root).as_posix()
        case_id = relative.replace("/", "__")
        cases.append(Case(case_id, patient_of(relative, spec.patient_id, case_id), folder, (mask,), root=raw_dir))
    if not cases:
        raise MedsegError(f"none of {len(folders)} DICOM series has a mask (expected layout: {spec.layout})", raw_dir)
    return cases


def _seg_file(path: Path, root: Path) -> Path:
    """The DICOM-SEG file itself, or the single file of a SEG series folder (hidden files left out)."""
    if path.is_file():
        return path
    files = listed_files(path, root)
    if len(files) != 1:
        raise MedsegError(f"expected one DICOM-SEG file in the folder, found {len(files)}", path)
    return files[0]


def _series(folder: Path, root: Path, max_voxels: int) -> tuple[list[SliceHeader], Volume]:
    """A series folder's slice headers (every DICOM file checked, named when broken) and its volume,
    which must be built from exactly those files."""
    headers = scan_series(folder, root)
    image, _ = read_dicom_series(folder, max_voxels, [h.path for h in headers])
    return headers, image


def _gt_series(folder: Path, root: Path, image: Volume, spec: DatasetSpec, max_voxels: int) -> np.ndarray:
    _, label = _series(folder, root, max_voxels)
    check_same_grid(image, label, folder)
    return map_mask(label.array, spec.mask_values, spec.labels, folder)


def load(case: Case, spec: DatasetSpec, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    root = case.dataset_root()
    headers, image = _series(case.image, root, max_voxels)
    form, path = spec.settings["mask"], case.masks[0]
    if not path.exists():
        raise MedsegError("mask not found", path)
    if form == "png_stack":
        mask = png_stack_mask(path, root, headers, image, spec.mask_values, spec.labels, max_voxels)
    elif form == "dicom_gt_series":
        mask = _gt_series(path, root, image, spec, max_voxels)
    elif form == "dicom_seg":
        seg = _seg_file(path, root)
        mask = map_mask(seg_mask(seg, headers, image), spec.mask_values, spec.labels, seg)
    else:
        mask = map_mask(resampled_mask(path, image, max_voxels), spec.mask_values, spec.labels, path)
    return image.array, mask
