"""Overlay figure of a few test slices: image, ground truth and prediction side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pick_slices(truth: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` slices with foreground, evenly spread over the split (stable choice)."""
    candidates = np.flatnonzero(truth.reshape(len(truth), -1).any(axis=1))
    if len(candidates) == 0:
        candidates = np.arange(len(truth))
    if len(candidates) <= count:
        return candidates.tolist()
    return candidates[np.linspace(0, len(candidates) - 1, count).round().astype(int)].tolist()


def write_overlays(path: Path, images: np.ndarray, truth: np.ndarray, predicted: np.ndarray, titles: list[str],
                   num_classes: int) -> None:
    """A PNG grid: one row per slice, columns image / truth / prediction (labels in colour over the image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(images), 1)
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.6 * rows), squeeze=False)
    colours = plt.get_cmap("tab10", max(num_classes, 2))
    for row, (image, gt, pred, title) in enumerate(zip(images, truth, predicted, titles, strict=True)):
        for column, (labels, name) in enumerate(((None, "image"), (gt, "ground truth"), (pred, "prediction"))):
            axis = axes[row, column]
            axis.imshow(image, cmap="gray", vmin=0, vmax=255)
            if labels is not None:
                shown = np.ma.masked_equal(labels, 0)
                axis.imshow(shown, cmap=colours, vmin=0, vmax=max(num_classes - 1, 1), alpha=0.5,
                            interpolation="nearest")
            axis.set_title(f"{name}" if column else f"{title}", fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
