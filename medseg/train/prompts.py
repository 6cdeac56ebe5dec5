"""Prompt simulation for point and box training (Gu et al., section 2.3).

A random foreground class is chosen, then one random contiguous region of it (8-connectivity: diagonally
touching pixels belong to the same region, so thin oblique structures are not split). Box prompts follow
SAM's strategy: the tight box plus Gaussian noise on each coordinate with std = ``noise_fraction`` x the
box side along that axis, each offset capped at ``max_noise`` pixels. Point prompts are sampled uniformly
among the region's pixels whose distance to the region's edge is strictly above the median distance.

Coordinates are in the mask's pixel frame (x = column, y = row); callers rescale them to the model's input
frame when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

PromptKind = Literal["box", "point"]
# 8-connectivity in 2-D (3x3 block of ones).
CONNECTIVITY = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class Prompt:
    """One simulated prompt: a box ``(x0, y0, x1, y1)`` or one foreground point ``(x, y)``."""

    kind: PromptKind
    label: int  # class value of the selected object in the label mask
    box: np.ndarray | None = None  # float32 (4,)
    points: np.ndarray | None = None  # float32 (1, 2) as (x, y)
    point_labels: np.ndarray | None = None  # int64 (1,); SAM convention: 1 = foreground


def _binary(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    binary = mask > 0
    if not binary.any():
        raise ValueError("mask has no foreground pixels; cannot simulate a prompt for an empty mask")
    return binary


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The tight box ``(x0, y0, x1, y1)`` of the foreground, inclusive pixel coordinates."""
    binary = _binary(mask)
    rows = np.flatnonzero(binary.any(axis=1))
    cols = np.flatnonzero(binary.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def perturb_box(
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    image_size: int | tuple[int, int],
    noise_fraction: float = 0.1,
    max_noise: float = 20.0,
) -> np.ndarray:
    """SAM-style noise on a tight inclusive box: float32 ``(x0, y0, x1, y1)`` clipped to the image.

    Each coordinate gets an independent offset ~ N(0, (noise_fraction x side)^2), where side is the box width
    for x and its height for y (in pixels, inclusive), clipped to +-``max_noise``. ``image_size`` is an int
    (square) or ``(height, width)``.
    """
    if noise_fraction < 0 or max_noise < 0:
        raise ValueError(f"noise_fraction and max_noise must be >= 0, got {noise_fraction}, {max_noise}")
    x0, y0, x1, y1 = box
    width, height = x1 - x0 + 1, y1 - y0 + 1
    std = noise_fraction * np.array([width, height, width, height], dtype=np.float64)
    offsets = np.clip(rng.normal(0.0, 1.0, size=4) * std, -max_noise, max_noise)
    noisy = np.array(box, dtype=np.float64) + offsets
    image_h, image_w = (image_size, image_size) if isinstance(image_size, int) else image_size
    noisy[[0, 2]] = np.sort(np.clip(noisy[[0, 2]], 0, image_w - 1))
    noisy[[1, 3]] = np.sort(np.clip(noisy[[1, 3]], 0, image_h - 1))
    return noisy.astype(np.float32)


def noisy_box(
    mask: np.ndarray,
    rng: np.random.Generator,
    noise_fraction: float = 0.1,
    max_noise: float = 20.0,
    image_size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """The mask's tight box with SAM-style noise (see ``perturb_box``); ``image_size`` defaults to its shape."""
    size = image_size if image_size is not None else (int(np.shape(mask)[0]), int(np.shape(mask)[1]))
    return perturb_box(tight_box(mask), rng, size, noise_fraction, max_noise)


def edge_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each foreground pixel to the nearest background pixel (image border counts)."""
    padded = np.pad(_binary(mask), 1, constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def interior_point(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A random foreground pixel ``(x, y)`` whose edge distance is strictly above the median.

    When no pixel is strictly above the median (e.g. a one-pixel-wide line), one of the pixels with the
    largest distance is chosen instead.
    """
    binary = _binary(mask)
    distance = edge_distance(binary)
    inside = distance[binary]
    candidates = binary & (distance > np.median(inside))
    if not candidates.any():
        candidates = binary & (distance == inside.max())
    rows, cols = np.nonzero(candidates)
    index = int(rng.integers(len(rows)))
    return int(cols[index]), int(rows[index])


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected foreground regions of ``mask`` as boolean masks, in label order."""
    labelled, count = ndimage.label(_binary(mask), structure=CONNECTIVITY)
    return [labelled == index for index in range(1, count + 1)]


def sample_prompt(
    label_mask: np.ndarray,
    rng: np.random.Generator,
    kind: PromptKind,
    noise_fraction: float = 0.1,
    max_noise: float = 20.0,
) -> tuple[np.ndarray, Prompt]:
    """A random object's region and its prompt: ``(binary target uint8 (H, W), Prompt)``.

    Picks a foreground class uniformly among those present in ``label_mask`` (0 is background), then one of
    its connected regions uniformly; the target is that region alone.
    """
    if kind not in ("box", "point"):
        raise ValueError(f"prompt kind must be 'box' or 'point', got {kind!r}")
    label_mask = np.asarray(label_mask)
    _binary(label_mask)  # checks the shape and that there is foreground
    classes = np.unique(label_mask[label_mask > 0])
    label = int(classes[rng.integers(classes.size)])
    regions = components(label_mask == label)
    region = regions[int(rng.integers(len(regions)))]
    if kind == "box":
        box = noisy_box(region, rng, noise_fraction, max_noise, image_size=label_mask.shape)
        prompt = Prompt(kind="box", label=label, box=box)
    else:
        x, y = interior_point(region, rng)
        prompt = Prompt(kind="point", label=label, points=np.array([[x, y]], dtype=np.float32),
                        point_labels=np.ones(1, dtype=np.int64))
    return region.astype(np.uint8), prompt
