"""Safe loading of image/label volume pairs in canonical (RAS+) orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import MedsegError


def _open_nifti(path: Path, max_voxels: int):
    """Open a NIfTI header, bounding its size before any voxel is read."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise MedsegError(f"cannot read image header ({exc.__class__.__name__}: {exc})", path) from exc
    shape = tuple(int(s) for s in image.shape)
    if len(shape) != 3:
        raise MedsegError(f"expected a 3D volume, got shape {shape}", path)
    if int(np.prod(shape, dtype=np.int64)) > max_voxels:
        raise MedsegError(f"volume of shape {shape} exceeds the limit of {max_voxels} voxels", path)
    try:
        return nib.as_closest_canonical(image)  # reads the voxels when the axes must be reordered
    except Exception as exc:  # truncated gzip, short file, bad scaling
        raise MedsegError(f"cannot read voxel data ({exc.__class__.__name__}: {exc})", path) from exc


def _voxels(image, path: Path) -> np.ndarray:
    try:
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # truncated gzip, short file, bad scaling
        raise MedsegError(f"cannot read voxel data ({exc.__class__.__name__}: {exc})", path) from exc
    if not np.all(np.isfinite(data)):
        raise MedsegError("volume contains NaN or infinite values", path)
    return data


def load_pair(image_path: Path, label_path: Path, max_voxels: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (float32) and label (uint8) arrays in RAS+ orientation, checked for consistency."""
    image = _open_nifti(image_path, max_voxels)
    label = _open_nifti(label_path, max_voxels)
    if image.shape != label.shape:
        raise MedsegError(f"label shape {label.shape} differs from image shape {image.shape}", label_path)
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise MedsegError("label geometry (affine) differs from its image", label_path)
    label_values = _voxels(label, label_path)
    if np.any(label_values < 0) or np.any(label_values != np.round(label_values)):
        raise MedsegError("label volume has negative or non-integer values", label_path)
    if label_values.max(initial=0) > 255:
        raise MedsegError("label values above 255 are not supported", label_path)
    return _voxels(image, image_path), label_values.astype(np.uint8)
