"""Prompt masks (``medseg predict --prompt-mask``): a label image or volume on each input's grid.

A single input takes one mask file; a folder input takes a folder holding, for each input, a mask of the
same file name or named as predict names its output (``<stem>_mask.png`` for images, ``<stem>_mask<suffix>``
for volumes). 2-D masks must have the image's size; volume masks its shape and affine; a DICOM series
takes a label volume in its patient space (NIfTI, MHA, NRRD, resampled onto the series, nearest) or a
DICOM-SEG of it. Values are labels: whole numbers 0-255 (0 is background).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import MedsegError
from medseg.infer.inputs import Scan, Source
from medseg.infer.writers import output_name

MAX_LABEL = 255


def prompt_mask_files(mask: Path, sources: list[Source], single: bool) -> dict[str, Path]:
    """The mask file of each input (``single``: ``--input`` named one file or series)."""
    if not mask.exists():
        raise MedsegError("prompt mask not found", mask)
    if single:
        if mask.is_dir() and sources[0].kind != "dicom":
            raise MedsegError("prompt mask is a folder, but the input is one file: give its mask file", mask)
        return {sources[0].name: mask}
    if not mask.is_dir():
        raise MedsegError("the input is a folder: give a folder of prompt masks, one per input", mask)
    found = {}
    for source in sources:
        names = (source.name, output_name(source))
        path = next((mask / name for name in names if (mask / name).is_file()), None)
        if path is None:
            raise MedsegError(f"no prompt mask for input '{source.name}' (expected {' or '.join(names)})", mask)
        found[source.name] = path
    return found


def read_prompt_mask(path: Path, scan: Scan, max_voxels: int) -> np.ndarray:
    """A prompt mask as a label array on ``scan.voxels``' grid (uint8)."""
    from medseg.data import volumes

    kind = scan.source.kind
    if kind == "image":
        labels = volumes.read_2d(path, max_voxels)
        if labels.shape != scan.native:
            raise MedsegError(f"prompt mask size {labels.shape} differs from the image's {scan.native}", path)
        labels = labels[..., None]
    elif kind == "dicom":
        labels = _dicom_mask(path, scan, max_voxels)
    else:
        mask = volumes.read_volume(path, max_voxels)
        volumes.check_same_grid(volumes.Volume(scan.voxels, scan.affine), mask, path)
        labels = mask.array
    if not (np.array_equal(labels, np.round(labels)) and labels.min() >= 0 and labels.max() <= MAX_LABEL):
        raise MedsegError(f"prompt mask values must be labels: whole numbers 0-{MAX_LABEL}", path)
    return labels.astype(np.uint8)


def _dicom_mask(path: Path, scan: Scan, max_voxels: int) -> np.ndarray:
    from medseg.data.dicom_masks import claims_dicom, resampled_mask, seg_mask

    series = scan.native
    if path.is_dir():
        raise MedsegError("prompt mask of a DICOM series must be a file (a label volume or a DICOM-SEG)", path)
    if claims_dicom(path):
        return seg_mask(path, series.headers, series.volume).astype(np.float32)
    return resampled_mask(path, series.volume, max_voxels).astype(np.float32)
