"""Point and box prompts for ``medseg predict``: from a JSON file, or derived from a prompt mask.

The JSON file (``--prompts``)::

    {"format": "medseg.prompts/1",                       (optional)
     "prompts": [
       {"image": "benign (1).png", "box": [x0, y0, x1, y1]},
       {"image": "case_01.nii.gz", "point": [i, j, k], "label": 2},
       {"image": "IM-0042.dcm", "box": [x0, y0, x1, y1]}]}

- Coordinates are 0-based pixel indices in the input as stored: ``x`` the column, ``y`` the row of a 2-D
  image or of a DICOM slice file (``image`` then names the slice file of the series); ``[i, j, k]`` voxel
  indices of a NIfTI/MHA/NRRD volume (the file's own axes, as ITK-SNAP and 3D Slicer show them). Boxes
  are inclusive corners. A volume's box ``[i0, j0, k0, i1, j1, k1]`` prompts every slice it spans along the
  model's slice axis; a point prompts the slice it lies in.
- ``image`` may be left out when ``--input`` is one file; every input needs at least one prompt.
- The model's mode decides the kind: ``point`` for point models, ``box`` for box models.
- ``label`` (1-255, default 1) is the value the prompted object gets in the written mask.

A prompt mask (``--prompt-mask``) is a label image or volume on the input's grid (for a DICOM series: a
label volume in its patient space, or a DICOM-SEG of it); a folder input takes a folder of masks named like
the inputs (or like predict's outputs, ``<stem>_mask.<suffix>``). It is sliced and resized as ingest does
masks; every 8-connected object of every label in a slice gets one prompt, as the study simulates them
(box: the tight box with Gaussian noise, std 10 % of the side, at most 20 px; point: a pixel deeper than the
median distance to the object's edge), drawn from a fixed seed, and the object keeps its label.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.infer.inputs import Scan, Source, canonical_points, coordinate_bounds

FORMAT = "medseg.prompts/1"
ENTRY_KEYS = {"image", "point", "box", "label"}
SEED = 0  # prompts derived from a mask are the same on every run


@dataclass(frozen=True)
class GivenPrompt:
    """One entry of the prompts file, checked against the inputs and the model's mode."""

    number: int  # position in the file (1-based), for errors
    image: str  # the input's name (a DICOM series: the slice file)
    coords: tuple[float, ...]
    label: int


@dataclass(frozen=True)
class SlicePrompt:
    """A prompt on one model slice: ``(x, y)`` or ``(x0, y0, x1, y1)`` in model input pixels, and its label."""

    slice: int
    coords: np.ndarray
    label: int


def _load_json(path: Path) -> list[Any]:
    if not path.is_file():
        raise MedsegError("prompts file not found", path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not a valid JSON prompts file ({exc.__class__.__name__}: {exc})", path) from exc
    if not isinstance(document, dict) or not isinstance(document.get("prompts"), list):
        raise MedsegError(f"expected an object with a 'prompts' list (format {FORMAT})", path)
    unknown = sorted(set(document) - {"format", "prompts"})
    if unknown or document.get("format", FORMAT) != FORMAT:
        raise MedsegError(f"unknown keys {unknown} or format {document.get('format')!r} (expected {FORMAT})", path)
    return document["prompts"]


def read_prompts(path: Path, mode: str, sources: list[Source]) -> dict[str, list[GivenPrompt]]:
    """The prompts of a JSON file by input name, checked: kinds, names, coordinate counts, every input
    prompted (coordinates are checked against each input's size when it is read)."""
    if mode == "automated":
        raise MedsegError("the model is automated and takes no prompts; drop --prompts", path)
    by_input: dict[str, list[GivenPrompt]] = {source.name: [] for source in sources}
    for number, entry in enumerate(_load_json(path), start=1):
        prompt = _entry(entry, number, mode, sources, path)
        source = sources[0].name if sources[0].kind == "dicom" else prompt.image
        by_input[source].append(prompt)
    unprompted = [name for name, prompts in by_input.items() if not prompts]
    if unprompted:
        raise MedsegError(f"no prompt for input '{unprompted[0]}' ({len(unprompted)} of {len(sources)} inputs "
                          "unprompted); every input needs at least one", path)
    return by_input


def _entry(entry: Any, number: int, mode: str, sources: list[Source], path: Path) -> GivenPrompt:
    where = f"prompt {number}"
    if not isinstance(entry, dict) or set(entry) - ENTRY_KEYS:
        keys = sorted(set(entry) - ENTRY_KEYS) if isinstance(entry, dict) else []
        raise MedsegError(f"{where}: expected an object with keys {sorted(ENTRY_KEYS)}" +
                          (f", got unknown {keys}" if keys else ""), path)
    kinds = [kind for kind in ("point", "box") if kind in entry]
    if kinds != [mode]:
        given = " and ".join(kinds) or "no point or box"
        raise MedsegError(f"{where}: has {given}, but the model takes one {mode} per prompt", path)
    image = _image_name(entry, where, sources, path)
    kind = sources[0].kind if sources[0].kind == "dicom" else next(s.kind for s in sources if s.name == image)
    volume = kind in ("nifti", "itk")
    width = (3 if volume else 2) * (1 if mode == "point" else 2)
    coords = entry[mode]
    if (not isinstance(coords, list) or len(coords) != width
            or not all(isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in coords)):
        raise MedsegError(f"{where}: '{mode}' must be {width} numbers for this {'volume' if volume else 'image'}, "
                          f"got {coords!r:.60}", path)
    if mode == "box" and any(coords[i] > coords[i + width // 2] for i in range(width // 2)):
        raise MedsegError(f"{where}: box corners must be [low..., high...], got {coords}", path)
    label = entry.get("label", 1)
    if not isinstance(label, int) or isinstance(label, bool) or not 1 <= label <= 255:
        raise MedsegError(f"{where}: 'label' must be a whole number in 1..255, got {label!r:.30}", path)
    return GivenPrompt(number, image, tuple(float(c) for c in coords), label)


def _image_name(entry: dict[str, Any], where: str, sources: list[Source], path: Path) -> str:
    image = entry.get("image")
    if sources[0].kind == "dicom":
        if not isinstance(image, str):
            raise MedsegError(f"{where}: 'image' must name the DICOM slice file the prompt lies on", path)
        return image
    if image is None and len(sources) == 1:
        return sources[0].name
    names = [source.name for source in sources]
    if image not in names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise MedsegError(f"{where}: 'image' {image!r:.80} is not among the inputs ({shown})", path)
    return str(image)


def to_model(point: np.ndarray, scan: Scan, axis: int, size: int) -> tuple[int, np.ndarray]:
    """A scan voxel index (3,) as a slice number and ``(x, y)`` in the model's input pixels (pixel centres
    mapped onto the resized slice)."""
    rows_axis, columns_axis = (a for a in range(3) if a != axis)
    shape = scan.voxels.shape
    x = (point[columns_axis] + 0.5) * size / shape[columns_axis] - 0.5
    y = (point[rows_axis] + 0.5) * size / shape[rows_axis] - 0.5
    return int(np.rint(point[axis])), np.clip(np.array([x, y]), 0, size - 1)


def slice_prompts(given: list[GivenPrompt], scan: Scan, axis: int, size: int, path: Path) -> list[SlicePrompt]:
    """The file's prompts of one input as prompts on its model slices."""
    prompts = []
    for prompt in given:
        slice_file = prompt.image if scan.source.kind == "dicom" else None
        if slice_file is not None and slice_file not in {header.path.name for header in scan.native.headers}:
            raise MedsegError(f"prompt {prompt.number}: 'image' {slice_file!r:.80} is not a slice file of the series "
                              f"{scan.source.path}", path)
        points = np.asarray(prompt.coords).reshape(-1, 3 if len(prompt.coords) in (3, 6) else 2)
        bounds = coordinate_bounds(scan, slice_file)
        if ((points < 0) | (points > np.asarray(bounds) - 1)).any():
            raise MedsegError(f"prompt {prompt.number}: {list(prompt.coords)} lies outside {prompt.image} "
                              f"(size {list(bounds)})", path)
        corners = canonical_points(scan, points, slice_file)
        if len(corners) == 1:
            index, xy = to_model(corners[0], scan, axis, size)
            prompts.append(SlicePrompt(index, xy.astype(np.float32), prompt.label))
            continue
        low, high = corners.min(axis=0), corners.max(axis=0)
        for index in range(int(np.rint(low[axis])), int(np.rint(high[axis])) + 1):
            _, start = to_model(low, scan, axis, size)
            _, end = to_model(high, scan, axis, size)
            prompts.append(SlicePrompt(index, np.concatenate([start, end]).astype(np.float32), prompt.label))
    return prompts


def mask_prompts(masks: np.ndarray, mode: str) -> list[SlicePrompt]:
    """One prompt per 8-connected object of each label in each slice of ``masks`` (N, S, S), as the study
    simulates them (``medseg.train.prompts``), from a fixed seed."""
    from medseg.train.prompted import PromptSettings
    from medseg.train.prompts import components, interior_point, noisy_box

    settings = PromptSettings()
    prompts = []
    for index in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)):
        mask = masks[index]
        objects = [(int(value), region) for value in np.unique(mask[mask > 0]) for region in components(mask == value)]
        for number, (value, region) in enumerate(objects):
            rng = np.random.default_rng([SEED, int(index), number])
            if mode == "box":
                coords = noisy_box(region, rng, settings.box_noise_fraction, settings.box_max_noise)
            else:
                coords = np.asarray(interior_point(region, rng), dtype=np.float32)
            prompts.append(SlicePrompt(int(index), coords, value))
    return prompts
