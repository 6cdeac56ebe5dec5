"""Cases (one image volume or 2D image with its masks) and safe path handling inside a dataset root."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import MedsegError


@dataclass(frozen=True)
class Case:
    """One image (a file or a DICOM series folder), its mask files (merged), and its patient."""

    case_id: str
    patient_id: str
    image: Path
    masks: tuple[Path, ...] = ()
    options: dict[str, str] = field(default_factory=dict, hash=False, compare=False)


def resolve_inside(root: Path, relative: str | Path, source: Path) -> Path:
    """Resolve ``relative`` under ``root`` (following links); refuse anything that escapes it."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise MedsegError(f"path '{relative}' escapes the dataset root {root}", source)
    return candidate


def find_files(root: Path, pattern: str, exclude: list[str] | None = None) -> list[Path]:
    """Files under ``root`` matching a glob (``**`` allowed), minus ``exclude`` globs on the name,
    sorted; every result is checked to stay inside the root."""
    found = []
    for path in sorted(root.glob(pattern)):
        if any(fnmatch.fnmatch(path.name, ex) for ex in exclude or []):
            continue
        if path.is_file() or path.is_dir():
            found.append(resolve_inside(root, path.relative_to(root), root))
    return found


def strip_suffixes(name: str) -> str:
    """A file name without its image suffixes (``.nii.gz``, ``.seg.nrrd``, ``.png`` ...)."""
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".mha", ".mhd", ".nrrd", ".npy", ".png", ".tif", ".tiff",
                   ".bmp", ".jpg", ".jpeg", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def patient_of(relative: str, pattern: str | None, fallback: str) -> str:
    """The patient id: the ``patient`` group (or whole match) of ``pattern`` searched in the path
    relative to the dataset root; ``fallback`` (the case id) when the dataset has no patient ids."""
    if not pattern:
        return fallback
    match = re.search(pattern, relative)
    if not match:
        raise MedsegError(f"patient id pattern {pattern!r} does not match '{relative}'")
    return match.groupdict().get("patient") or match.group(0)


def first_existing(path: Path, root: Path, rules: list[dict[str, str]]) -> Path | None:
    """The first path derived by ``rules`` (``{regex, replace}`` each, tried in order) whose regex applies
    and whose file exists; None when none does."""
    relative = path.relative_to(root.resolve()).as_posix()
    for rule in rules:
        derived, count = re.subn(rule["regex"], rule["replace"], relative)
        if count and (candidate := resolve_inside(root, derived, path)).is_file():
            return candidate
    return None


def derive(path: Path, root: Path, regex: str, replacement: str) -> Path:
    """Another file's path from this one's path relative to the root, by regex substitution."""
    relative = path.relative_to(root.resolve()).as_posix()
    derived, count = re.subn(regex, replacement, relative)
    if count == 0:
        raise MedsegError(f"pairing rule {regex!r} does not match '{relative}'", path)
    return resolve_inside(root, derived, path)


def find_images(raw_dir: Path, settings: dict, layout: str) -> list[Path]:
    """The images of a dataset by its ``images`` glob and ``exclude`` globs; none is an error that
    shows the expected layout."""
    images = find_files(raw_dir, settings["images"], settings.get("exclude"))
    if not images:
        raise MedsegError(f"no images match '{settings['images']}' (expected layout: {layout})", raw_dir)
    return images


def case_for(image: Path, raw_dir: Path, patient_pattern: str | None, masks: tuple[Path, ...] = ()) -> Case:
    """A case named after the image's path under the root (``/`` -> ``__``), with its patient."""
    relative = image.relative_to(raw_dir.resolve()).as_posix()
    case_id = strip_suffixes(relative).replace("/", "__")
    return Case(case_id, patient_of(relative, patient_pattern, case_id), image, masks)
