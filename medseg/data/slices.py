"""The study's slice protocol: volume -> normalised, resized 2D slices with masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceProtocol:
    """How volumes become slices (params.yaml ``ingest`` section)."""

    image_size: int
    slice_axis: int
    intensity_window: tuple[float, float] | None
    drop_empty_slices: bool
    percentile_clip: tuple[float, float] | None = None


def to_uint8(volume: np.ndarray, window: tuple[float, float] | None,
             percentiles: tuple[float, float] | None = None) -> np.ndarray:
    """Intensities to 0-255: a fixed window (e.g. a CT window), else per-volume percentiles, else
    per-volume min-max (the study's default)."""
    from monai.transforms import ScaleIntensity, ScaleIntensityRange, ScaleIntensityRangePercentiles

    if window is not None:
        low, high = window
        scaled = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=255.0, clip=True)(volume)
    elif percentiles is not None:
        low, high = percentiles
        scaled = ScaleIntensityRangePercentiles(lower=low, upper=high, b_min=0.0, b_max=255.0, clip=True)(volume)
    else:
        scaled = ScaleIntensity(minv=0.0, maxv=255.0)(volume)
    return np.clip(np.round(np.asarray(scaled)), 0, 255).astype(np.uint8)


def _resize_stack(stack: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Resize (N, H, W) slices to (N, size, size) with MONAI (slices ride on the channel axis)."""
    from monai.transforms import Resize

    if stack.shape[1:] == (size, size):
        return stack
    resized = Resize(spatial_size=(size, size), mode=mode)(stack.astype(np.float32))
    return np.asarray(resized)


def volume_to_slices(
    image: np.ndarray, label: np.ndarray | None, protocol: SliceProtocol
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of one volume: uint8 images (N, S, S), uint8 masks (N, S, S), source slice indices.

    Without a label (pretraining sets) masks are zero and blank (constant) slices are dropped. A slice keeps
    the volume's two other axes in order (RAS+ volumes: an axial slice's row index runs towards the
    patient's right, which is not the radiological display; figures turn slices for display only, see
    ``medseg.eval.overlays``)."""
    image_u8 = to_uint8(image, protocol.intensity_window, protocol.percentile_clip)
    images = np.moveaxis(image_u8, protocol.slice_axis, 0)
    masks = np.zeros_like(images) if label is None else np.moveaxis(label, protocol.slice_axis, 0)
    indices = np.arange(images.shape[0])
    if label is None:
        keep = images.reshape(images.shape[0], -1).std(axis=1) > 0
        images, masks, indices = images[keep], masks[keep], indices[keep]
    elif protocol.drop_empty_slices:
        keep = masks.reshape(masks.shape[0], -1).any(axis=1)
        images, masks, indices = images[keep], masks[keep], indices[keep]
    if images.shape[0] == 0:
        empty = np.zeros((0, protocol.image_size, protocol.image_size), dtype=np.uint8)
        return empty, empty.copy(), indices
    images = _resize_stack(images, protocol.image_size, "bilinear")
    masks = _resize_stack(masks, protocol.image_size, "nearest")
    return (
        np.clip(np.round(images), 0, 255).astype(np.uint8),
        np.round(masks).astype(np.uint8),
        indices,
    )


def image_slices(image: np.ndarray, image_size: int, slice_axis: int, window: tuple[float, float] | None,
                 percentiles: tuple[float, float] | None = None) -> np.ndarray:
    """Every slice of a volume as ingest stores its images (uint8 (N, S, S); none dropped): the same
    intensity scaling over the whole volume, slicing and bilinear resize as :func:`volume_to_slices`."""
    images = np.moveaxis(to_uint8(image, window, percentiles), slice_axis, 0)
    return np.clip(np.round(_resize_stack(images, image_size, "bilinear")), 0, 255).astype(np.uint8)


def mask_slices(label: np.ndarray, image_size: int, slice_axis: int) -> np.ndarray:
    """Every slice of a label volume as ingest stores its masks (uint8 (N, S, S), nearest resize)."""
    masks = np.moveaxis(np.asarray(label), slice_axis, 0)
    return np.round(_resize_stack(masks, image_size, "nearest")).astype(np.uint8)
