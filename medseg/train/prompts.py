"""Prompt simulation for point and box training (Gu et al., section 2.3).

A random foreground class is chosen, then one random contiguous region of it (8-connectivity: diagonally
touching pixels belong to the same region, so thin oblique structures are not split). Box prompts follow
SAM's strategy: the tight box plus Gaussian noise on each coordinate with std = ``noise_fraction`` x the
box side along that axis, each offset capped at ``max_noise`` pixels. Point prompts are sampled uniformly
among the region's pixels whose distance to the region's edge is strictly above the median distance.

The ``released_code`` box preset follows the study's released code (``get_top_boxes`` with
``region_type='largest_3'`` and ``MaskToBoxSimple``) instead: the target is the union of up to
``largest_regions`` largest regions of the chosen class (ties: label order), and each side of its tight
box moves outward by a uniform draw in [0, ``noise_fraction`` x (max - min coordinate)] (no pixel cap).
The released code gives the prompt encoder one such box per region; our models take one box, so it
spans the union of those regions.

Coordinates are in the mask's pixel frame (x = column, y = row); callers rescale them to the model's input
frame when the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

PromptKind = Literal["box", "point"]
BOX_PRESETS = ("paper", "released_code")
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


def largest_regions(mask: np.ndarray, count: int) -> np.ndarray:
    """Boolean union of the ``count`` largest 8-connected foreground regions (all when fewer; equal sizes
    in label order)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    regions = components(mask)
    ranked = sorted(range(len(regions)), key=lambda index: -int(regions[index].sum()))
    return np.logical_or.reduce([regions[index] for index in ranked[:count]])


def outward_box(mask: np.ndarray, rng: np.random.Generator, noise_fraction: float = 0.1,
                image_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """The released code's box: the tight box with each side moved outward by ``U(0, 1) x noise_fraction x
    (max - min)`` of its axis, clipped to the image; float32 ``(x0, y0, x1, y1)``."""
    if noise_fraction < 0:
        raise ValueError(f"noise_fraction must be >= 0, got {noise_fraction}")
    x0, y0, x1, y1 = tight_box(mask)
    reach = noise_fraction * np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dtype=np.float64)
    noisy = np.array([x0, y0, x1, y1], dtype=np.float64) + np.array([-1, -1, 1, 1]) * reach * rng.random(4)
    size = image_size if image_size is not None else np.shape(mask)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    noisy[[0, 2]] = np.clip(noisy[[0, 2]], 0, width - 1)
    noisy[[1, 3]] = np.clip(noisy[[1, 3]], 0, height - 1)
    return noisy.astype(np.float32)


def sample_prompt(
    label_mask: np.ndarray,
    rng: np.random.Generator,
    kind: PromptKind,
    noise_fraction: float = 0.1,
    max_noise: float = 20.0,
    box_preset: str = "paper",
    regions: int = 3,
) -> tuple[np.ndarray, Prompt]:
    """A random object's region and its prompt: ``(binary target uint8 (H, W), Prompt)``.

    Picks a foreground class uniformly among those present in ``label_mask`` (0 is background), then one of
    its connected regions uniformly; the target is that region alone. A box with ``box_preset`` released_code
    targets the union of the class's ``regions`` largest regions instead (``outward_box``).
    """
    if kind not in ("box", "point"):
        raise ValueError(f"prompt kind must be 'box' or 'point', got {kind!r}")
    if box_preset not in BOX_PRESETS:
        raise ValueError(f"box_preset must be one of {list(BOX_PRESETS)}, got {box_preset!r}")
    label_mask = np.asarray(label_mask)
    _binary(label_mask)  # checks the shape and that there is foreground
    classes = np.unique(label_mask[label_mask > 0])
    label = int(classes[rng.integers(classes.size)])
    if kind == "box" and box_preset == "released_code":
        target = largest_regions(label_mask == label, regions)
        box = outward_box(target, rng, noise_fraction, image_size=label_mask.shape)
        return target.astype(np.uint8), Prompt(kind="box", label=label, box=box)
    regions_of_class = components(label_mask == label)
    region = regions_of_class[int(rng.integers(len(regions_of_class)))]
    if kind == "box":
        box = noisy_box(region, rng, noise_fraction, max_noise, image_size=label_mask.shape)
        prompt = Prompt(kind="box", label=label, box=box)
    else:
        x, y = interior_point(region, rng)
        prompt = Prompt(kind="point", label=label, points=np.array([[x, y]], dtype=np.float32),
                        point_labels=np.ones(1, dtype=np.int64))
    return region.astype(np.uint8), prompt
