"""Masks written in each input's own geometry and format (DICOM-SEG: ``medseg.infer.dicom_seg``).

- 2-D image -> ``<stem>_mask.png``: a uint8 label image of the input's size (labels as values, not a
  display image), with the model named in its ``Description`` text chunk;
- NIfTI -> ``<stem>_mask.nii.gz`` (``.nii`` for ``.nii``): uint8 labels with the input's header, affine and
  qform/sform codes, the model named in ``descrip``;
- MHA/MHD -> ``<stem>_mask.mha``, NRRD -> ``<stem>_mask.nrrd``: uint8 labels with the input's origin, spacing and
  direction, the model named in the ``medseg_model`` field;
- DICOM series -> ``<folder>_seg.dcm``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.infer.inputs import Scan, Source, to_file_order

NIFTI_DESCRIP_BYTES = 80


def output_name(source: Source) -> str:
    """The file name predict writes for an input."""
    if source.kind == "image":
        return f"{source.stem}_mask.png"
    if source.kind == "dicom":
        return f"{source.name}_seg.dcm"
    if source.kind == "nifti":
        return f"{source.stem}_mask{'.nii' if source.name.lower().endswith('.nii') else '.nii.gz'}"
    return f"{source.stem}_mask{'.nrrd' if source.name.lower().endswith('.nrrd') else '.mha'}"


def write_mask(labels: np.ndarray, scan: Scan, path: Path, description: str, short: str) -> None:
    """Write a label array on ``scan.voxels``' grid as the input's kind of file (not DICOM); ``short``: the
    description for NIfTI's 80-byte ``descrip``."""
    if scan.source.kind == "image":
        _write_png(labels[..., 0], path, description)
    elif scan.source.kind == "nifti":
        _write_nifti(to_file_order(labels, scan.to_canonical), scan.native, path, short)
    else:
        _write_itk(to_file_order(labels, scan.to_canonical), scan.native, path, description)


def _write_png(labels: np.ndarray, path: Path, description: str) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Description", description)
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="L").save(path, format="PNG", pnginfo=info)


def _write_nifti(labels: np.ndarray, native: Any, path: Path, description: str) -> None:
    """uint8 labels with the input's header: same affine, qform and sform (with their codes)."""
    import nibabel as nib

    header = native.header.copy()
    header.set_data_dtype(np.uint8)
    image = native.__class__(np.ascontiguousarray(labels, dtype=np.uint8), native.affine, header)
    qform, qcode = native.header.get_qform(coded=True)
    sform, scode = native.header.get_sform(coded=True)
    image.set_qform(qform if qform is not None else native.affine, int(qcode))
    image.set_sform(sform if sform is not None else native.affine, int(scode))
    image.header.set_slope_inter(1.0, 0.0)
    image.header["descrip"] = description.encode("utf-8")[: NIFTI_DESCRIP_BYTES - 1]
    image.header["cal_min"], image.header["cal_max"] = 0, int(labels.max(initial=0))
    nib.save(image, str(path))


def _write_itk(labels: np.ndarray, native: Any, path: Path, description: str) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0), dtype=np.uint8))
    image.CopyInformation(native)
    image.SetMetaData("medseg_model", description)
    sitk.WriteImage(image, str(path), True)
