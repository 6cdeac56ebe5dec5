"""Safe reading of medical images with SimpleITK: NIfTI, MHA, NRRD (incl. ``.seg.nrrd``), DICOM
series and 2D files. Volumes come back as float32 arrays indexed (x, y, z) in RAS+ orientation (the
same arrays as nibabel's ``as_closest_canonical``), with their geometry; sizes are checked from the
header before any voxel is read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Volume:
    """Voxels (x, y, z) in RAS+ orientation and their voxel-to-RAS affine (4x4)."""

    array: np.ndarray
    affine: np.ndarray


def _reader(path: Path, max_voxels: int):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise MedsegError(f"cannot read image header ({_first_line(exc)})", path) from exc
    _check_size(tuple(reader.GetSize()), max_voxels, path)
    return reader


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    fallback = lines[-1] if lines else ""
    message = next((line for line in lines if "rror" in line or "exception" in line.lower()), fallback)
    return f"{exc.__class__.__name__}: {message[:160]}"


def _check_size(size: tuple[int, ...], max_voxels: int, path: Path) -> None:
    if int(np.prod(size, dtype=np.int64)) > max_voxels:
        raise MedsegError(f"image of size {size} exceeds the limit of {max_voxels} voxels", path)


def _voxels(reader, path: Path):
    try:
        return reader.Execute()
    except RuntimeError as exc:  # truncated gzip, short file
        raise MedsegError(f"cannot read voxel data ({_first_line(exc)})", path) from exc


def _to_volume(image, path: Path) -> Volume:
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise MedsegError(f"expected a 3D volume, got {image.GetDimension()}D", path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MedsegError(f"expected one channel, got {image.GetNumberOfComponentsPerPixel()}", path)
    oriented = sitk.DICOMOrient(image, "RAS")
    array = sitk.GetArrayFromImage(oriented).transpose(2, 1, 0).astype(np.float32)
    return _finite(Volume(array, ras_affine(oriented)), path)


def ras_affine(image) -> np.ndarray:
    """The voxel-to-RAS affine (4x4) of a 3D SimpleITK image (ITK's geometry is LPS)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(image.GetOrigin())
    return affine


def _finite(volume: Volume, path: Path) -> Volume:
    if not np.all(np.isfinite(volume.array)):
        raise MedsegError("image contains NaN or infinite values", path)
    return volume


def read_nifti_image(path: Path, max_voxels: int) -> tuple[Volume, Any]:
    """A NIfTI file as a RAS+ volume, with the nibabel image as stored (its header and affine). NIfTI is read
    through nibabel, which (unlike ITK's NIfTI reader) refuses truncated files."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise MedsegError(f"cannot read image header ({exc.__class__.__name__}: {exc})", path) from exc
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 3:
        raise MedsegError(f"expected a 3D volume, got shape {shape}", path)
    _check_size(shape, max_voxels, path)
    try:
        canonical = nib.as_closest_canonical(image)  # reads the voxels when axes must be reordered
        array = np.asarray(canonical.dataobj, dtype=np.float32)
    except Exception as exc:  # truncated gzip, short file, bad scaling
        raise MedsegError(f"cannot read voxel data ({exc.__class__.__name__}: {exc})", path) from exc
    return _finite(Volume(array, canonical.affine), path), image


def read_itk_image(path: Path, max_voxels: int) -> tuple[Volume, Any]:
    """An MHA, NRRD (or other ITK-readable) volume as a RAS+ volume, with the SimpleITK image as stored."""
    image = _voxels(_reader(path, max_voxels), path)
    return _to_volume(image, path), image


def read_volume(path: Path, max_voxels: int) -> Volume:
    """A 3D image file (NIfTI, MHA, NRRD incl. .seg.nrrd, single-file DICOM) as a RAS+ volume."""
    if path.name.endswith(NIFTI_SUFFIXES):
        return read_nifti_image(path, max_voxels)[0]
    return read_itk_image(path, max_voxels)[0]


def read_dicom_series(folder: Path, max_voxels: int,
                      expected: Sequence[Path] | None = None) -> tuple[Volume, list[str]]:
    """A DICOM series folder as a RAS+ volume, with the SOP Instance UIDs of its slices in the
    order of the volume's file list (the reader sorts by position). With ``expected`` (the DICOM
    files a header scan found), the reader's file list must hold exactly those files."""
    import SimpleITK as sitk

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise MedsegError("no DICOM series found", folder)
    if len(series) > 1:
        raise MedsegError(f"{len(series)} DICOM series in one folder; expected one", folder)
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0])
    if expected is not None:
        _check_file_list([Path(f) for f in files], list(expected))
    first = _reader(Path(files[0]), max_voxels)
    _check_size((*first.GetSize()[:2], len(files)), max_voxels, folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOn()
    image = _voxels(reader, folder)
    uids = [reader.GetMetaData(i, "0008|0018").strip() if reader.HasMetaDataKey(i, "0008|0018") else ""
            for i in range(len(files))]
    return _to_volume(image, folder), uids


def _check_file_list(files: list[Path], expected: list[Path]) -> None:
    """The series reader's files are the scanned DICOM files: none left out, none added."""
    listed = {path.absolute() for path in files}
    left_out = [path for path in expected if path.absolute() not in listed]
    if left_out:
        raise MedsegError("DICOM file is not part of the volume the series reader builds (unreadable to it, "
                          "or of another series)", left_out[0])
    scanned = {path.absolute() for path in expected}
    added = [path for path in files if path.absolute() not in scanned]
    if added:
        raise MedsegError("the series reader takes this file as a slice, but it is not a readable DICOM image "
                          "(or it is hidden)", added[0])


def read_2d(path: Path, max_voxels: int) -> np.ndarray:
    """A 2D image (PNG, TIFF, BMP, JPEG, ...) as a float32 (H, W) array; colour is averaged to gray."""
    reader = _reader(path, max_voxels)
    image = _voxels(reader, path)
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array = array.squeeze()
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        raise MedsegError(f"expected a 2D image, got shape {array.shape}", path)
    if not np.all(np.isfinite(array)):
        raise MedsegError("image contains NaN or infinite values", path)
    return array


def check_same_grid(image: Volume, label: Volume, label_path: Path) -> None:
    """Refuse a label whose voxel grid differs from its image's (shape or affine)."""
    if image.array.shape != label.array.shape:
        raise MedsegError(f"label shape {label.array.shape} differs from image shape {image.array.shape}",
                          label_path)
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise MedsegError("label geometry (affine) differs from its image", label_path)
