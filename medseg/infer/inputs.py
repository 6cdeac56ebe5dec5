"""What ``medseg predict --input`` holds, read as ingest reads it.

An input is a 2-D image (PNG, JPEG, BMP, TIFF), a NIfTI (``.nii``, ``.nii.gz``), MHA/MHD or NRRD volume, a
folder of such files, or a DICOM series folder (a folder holding any file that is or claims to be DICOM).
Volumes come as RAS+ arrays (x, y, z), 2-D images as ``(rows, columns, 1)`` arrays as the file shows them,
each with the map from the file's own voxel indices to those arrays, so prompts given in the file's
coordinates and masks written back land where they belong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.cases import listed_files, printable
from medseg.data.volumes import NIFTI_SUFFIXES, Volume
from medseg.errors import MedsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd")
KINDS = {"image": "2-D image", "nifti": "NIfTI volume", "itk": "MHA/NRRD volume", "dicom": "DICOM series"}


@dataclass(frozen=True)
class Source:
    """One input found under ``--input``, not yet read."""

    path: Path
    kind: str  # image, nifti, itk or dicom

    @property
    def name(self) -> str:
        """How prompts refer to it: the file name (the folder name for a DICOM series)."""
        return self.path.name

    @property
    def stem(self) -> str:
        for suffix in (*NIFTI_SUFFIXES[::-1], *IMAGE_SUFFIXES, *ITK_SUFFIXES):
            if self.name.lower().endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


@dataclass(frozen=True)
class Scan:
    """A read input: its voxels as ingest sees them (RAS+, or as the file shows a 2-D image), the map from the
    file's voxel indices to those (4x4, a signed axis permutation), and what its writer needs."""

    source: Source
    voxels: np.ndarray
    to_canonical: np.ndarray
    native: Any = field(repr=False)  # nibabel image, SimpleITK image, DicomSeries or the 2-D shape
    affine: np.ndarray | None = None  # voxel-to-RAS of ``voxels`` (volumes)


@dataclass(frozen=True)
class DicomSeries:
    """A series' slice headers (in file-name order) and its RAS+ volume."""

    headers: list[Any]
    volume: Volume


def _kind_of_file(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    return None


def find_inputs(path: Path) -> list[Source]:
    """The inputs ``path`` holds, sorted by name; one line naming ``path`` when there is none."""
    from medseg.data.dicom_masks import claims_dicom

    if not path.exists():
        raise MedsegError("input not found", path)
    if path.is_file():
        kind = _kind_of_file(path)
        if kind is None:
            hint = "; give the folder of its series" if claims_dicom(path) else ""
            raise MedsegError(f"not a supported input (PNG/JPEG/BMP/TIFF image, NIfTI, MHA or NRRD volume, or a "
                              f"DICOM series folder){hint}", path)
        return [Source(path, kind)]
    files = listed_files(path, path)
    if not files:
        searched = " (sub-folders are not searched)" if any(path.iterdir()) else ""
        raise MedsegError(f"input folder is empty{searched}", path)
    if any(claims_dicom(file) for file in files):
        return [Source(path, "dicom")]
    found = [Source(file, kind) for file in files if (kind := _kind_of_file(file)) is not None]
    if not found:
        raise MedsegError("input folder holds no image, volume or DICOM file "
                          f"(e.g. {printable(files[0].name)})", path)
    return found


def read_scan(source: Source, max_voxels: int) -> Scan:
    """Read one input (sizes checked against ``max_voxels`` before any voxel is read)."""
    from medseg.data import volumes

    if source.kind == "image":
        image = volumes.read_2d(source.path, max_voxels)
        return Scan(source, image[..., None], np.eye(4), image.shape)
    if source.kind == "dicom":
        return _read_dicom(source, max_voxels)
    if source.kind == "nifti":
        volume, native = volumes.read_nifti_image(source.path, max_voxels)
        file_affine = native.affine
    else:
        volume, native = volumes.read_itk_image(source.path, max_voxels)
        file_affine = volumes.ras_affine(native)
    return Scan(source, volume.array, _index_map(volume.affine, file_affine, source.path), native, volume.affine)


def _read_dicom(source: Source, max_voxels: int) -> Scan:
    """One DICOM series: every DICOM file checked (named when broken), one series only."""
    import SimpleITK as sitk

    from medseg.data.dicom_masks import scan_series
    from medseg.data.volumes import read_dicom_series

    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(source.path))
    if len(series) > 1:
        raise MedsegError(f"{len(series)} DICOM series in one folder; give one series per folder", source.path)
    headers = scan_series(source.path, source.path)
    volume, _ = read_dicom_series(source.path, max_voxels, [h.path for h in headers])
    return Scan(source, volume.array, np.eye(4), DicomSeries(headers, volume), volume.affine)


def _index_map(canonical_affine: np.ndarray, file_affine: np.ndarray, path: Path) -> np.ndarray:
    """File voxel index -> RAS+ array index: a signed permutation of the axes plus an offset."""
    mapping = np.linalg.inv(canonical_affine) @ file_affine
    rounded = np.rint(mapping)
    linear = np.abs(rounded[:3, :3])
    if not np.allclose(mapping, rounded, atol=1e-3) or not (linear.sum(0) == 1).all() or not (linear.sum(1) == 1).all():
        raise MedsegError("cannot map the file's voxel axes onto RAS+ axes (oblique reorientation)", path)
    return rounded


def to_file_order(canonical: np.ndarray, to_canonical: np.ndarray) -> np.ndarray:
    """A RAS+ array (x, y, z) back in the file's own voxel order (undoes the reorientation)."""
    linear = np.rint(to_canonical[:3, :3]).astype(int)
    axes = [int(np.flatnonzero(linear[:, axis])[0]) for axis in range(3)]
    array = np.transpose(canonical, axes)
    flips = tuple(axis for axis in range(3) if linear[axes[axis], axis] < 0)
    return np.flip(array, flips) if flips else array


def coordinate_bounds(scan: Scan, slice_file: str | None) -> tuple[int, ...]:
    """The extent of each prompt coordinate: (columns, rows) of a 2-D image or DICOM slice, the file's
    voxel counts (i, j, k) of a volume."""
    if scan.source.kind == "image":
        rows, columns = scan.native
        return columns, rows
    if scan.source.kind == "dicom":
        rows, columns = dicom_header(scan, slice_file).plane.shape
        return columns, rows
    return tuple(int(n) for n in scan.native.shape) if scan.source.kind == "nifti" else tuple(scan.native.GetSize())


def dicom_header(scan: Scan, slice_file: str | None) -> Any:
    """The header of the series' slice file named ``slice_file``."""
    for header in scan.native.headers:
        if header.path.name == slice_file:
            return header
    raise MedsegError(f"'{slice_file}' is not a slice file of the series", scan.source.path)


def canonical_points(scan: Scan, points: np.ndarray, slice_file: str | None) -> np.ndarray:
    """Prompt coordinates (n, 2) ``(x, y)`` of a 2-D image or DICOM slice, or (n, 3) voxel indices of a volume,
    as (n, 3) indices into ``scan.voxels``."""
    points = np.asarray(points, dtype=np.float64)
    if scan.source.kind == "image":
        return np.stack([points[:, 1], points[:, 0], np.zeros(len(points))], axis=1)
    if scan.source.kind == "dicom":
        from medseg.data.dicom_masks import frame_index

        header = dicom_header(scan, slice_file)
        index = np.stack(frame_index(header.plane, scan.native.volume, header.path)).astype(np.float64)
        rows, columns = header.plane.shape
        along_row = index[:, 0, 1] - index[:, 0, 0] if columns > 1 else np.zeros(3)
        down_column = index[:, 1, 0] - index[:, 0, 0] if rows > 1 else np.zeros(3)
        return index[:, 0, 0] + points[:, :1] * along_row + points[:, 1:2] * down_column
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
    return (scan.to_canonical @ homogeneous.T).T[:, :3]
