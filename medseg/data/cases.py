"""Cases (one image volume or 2D image with its masks) and safe path handling inside a dataset root."""

from __future__ import annotations

import fnmatch
import os
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
    root: Path | None = field(default=None, compare=False)  # the dataset root, for files listed at load time

    def dataset_root(self) -> Path:
        """The dataset root every file this case reads must stay inside."""
        if self.root is None:
            raise ValueError(f"case {self.case_id} was made without its dataset root")
        return self.root


class RuleMismatch(MedsegError):
    """A pairing rule whose regex does not apply to a path (a ``first`` rule then tries the next)."""


def printable(path: str | Path) -> str:
    """A path as printable text: bytes that are not UTF-8 shown as ``\\xNN``."""
    text = os.fspath(path)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (e.g. from JSON)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _check_utf8(path: Path, root: Path) -> None:
    """Refuse a name under ``root`` (the part below it: the root's own name is the user's) that is not UTF-8."""
    base = next((r for r in (root, root.resolve()) if path.is_relative_to(r)), None)
    text = path.relative_to(base).as_posix() if base else str(path)
    if printable(text) != text:
        raise MedsegError("file name is not valid UTF-8; rename it", printable(path))


def checked_path(root: Path, path: Path) -> Path:
    """``path``, found by listing a folder under ``root``, resolved (links followed); a file name that is
    not UTF-8 or a link that leads out of the root is refused, naming the file."""
    _check_utf8(path, root)
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise MedsegError(f"escapes the dataset root {printable(root)}: it links to {printable(resolved)}",
                          printable(path))
    _check_utf8(resolved, root)
    return resolved


def listed_files(folder: Path, root: Path) -> list[Path]:
    """The files of a folder as listed (not resolved), hidden ones left out; every file, hidden ones
    included (a series reader scans them all), is first checked against the root (:func:`checked_path`)."""
    files = [path for path in sorted(checked_path(root, folder).iterdir()) if path.is_file()]
    for path in files:
        checked_path(root, path)
    return [path for path in files if not path.name.startswith(".")]


def resolve_inside(root: Path, relative: str | Path, source: Path) -> Path:
    """Resolve ``relative`` (named by ``source``: a listing, a rule's image) under ``root``, following
    links; refuse a path that escapes the root as written (naming ``source``) or through a link (naming
    the link)."""
    written = Path(os.path.normpath(root / relative))
    if not written.is_relative_to(os.path.normpath(root)):
        raise MedsegError(f"path '{relative}' escapes the dataset root {root}", source)
    return checked_path(root, written)


def find_files(root: Path, pattern: str, exclude: list[str] | None = None) -> list[Path]:
    """Files under ``root`` matching a glob (``**`` allowed), minus ``exclude`` globs on the name,
    sorted; every result is checked to stay inside the root."""
    found = []
    for path in sorted(root.glob(pattern)):
        if any(fnmatch.fnmatch(path.name, ex) for ex in exclude or []):
            continue
        if path.is_file() or path.is_dir():
            found.append(checked_path(root, path))
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
        raise RuleMismatch(f"pairing rule {regex!r} does not match '{relative}'", path)
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
    return Case(case_id, patient_of(relative, patient_pattern, case_id), image, masks, root=raw_dir)
