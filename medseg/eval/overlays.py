"""Overlay figure of a few test slices: image, ground truth and prediction side by side.

Display rule: slices of volumes are stored as ingest left them, RAS+ arrays indexed by the two
remaining RAS+ axes (``ingest.json`` ``orientation: RAS+``); the figure turns them, for display
only, to the radiological convention (axial: anterior up, the patient's right on the image's left;
coronal: superior up, right on the left; sagittal: superior up, anterior on the left) and marks the
edges with the anatomical directions. Stored data, training and scores are untouched. 2D images
(``orientation: file``, e.g. ultrasound PNGs) are shown as the file shows them. Point and box
prompts are drawn on the image and prediction panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".npy")
# edge letters (top, bottom, left, right) of the radiological view, per slice axis of the RAS+ volume
EDGES = {0: ("S", "I", "A", "P"), 1: ("S", "I", "R", "L"), 2: ("A", "P", "R", "L")}
PROMPT_COLOUR = "#ffd700"


@dataclass(frozen=True)
class View:
    """How stored slices are shown: turned to the radiological view (RAS+ volumes) or as stored."""

    radiological: bool
    slice_axis: int = 2

    @property
    def caption(self) -> str:
        if not self.radiological:
            return "shown as stored in the image files"
        return {0: "sagittal, radiological view: superior up, anterior on the left",
                1: "coronal, radiological view: superior up, patient's right on the image's left",
                2: "axial, radiological view: anterior up, patient's right on the image's left",
                }.get(self.slice_axis, "radiological view")


@dataclass(frozen=True)
class OverlaySlices:
    """The slices to draw, as stored: images, truth and prediction (N, S, S), one title each, and the
    prompt of each slice (float (2,) point or (4,) box, x = column, y = row) for prompted models."""

    images: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    titles: list[str]
    prompts: list[np.ndarray] | None = None
    scores: list[str] | None = None  # e.g. "Dice 0.52", shown beside "prediction"


def view_for(summary: dict[str, Any], image_file: str) -> View:
    """The view of an ingested dataset: from ``ingest.json``'s ``orientation``, or (older ingests without
    it) from the source file type: pictures and .npy stacks as stored, volumes radiological."""
    orientation = summary.get("orientation")
    if orientation is None:
        orientation = "file" if str(image_file).lower().endswith(PICTURE_SUFFIXES) else "RAS+"
    return View(radiological=orientation == "RAS+", slice_axis=int(summary.get("slice_axis", 2)))


def to_display(array: np.ndarray, view: View) -> np.ndarray:
    """A stored (H, W) slice as shown: RAS+ slices transposed and flipped both ways."""
    return np.flip(array.T, (0, 1)) if view.radiological else array


def prompt_to_display(prompt: np.ndarray, shape: tuple[int, int], view: View) -> np.ndarray:
    """A point ``(x, y)`` or box ``(x0, y0, x1, y1)`` of a stored (H, W) slice in display coordinates."""
    prompt = np.asarray(prompt, dtype=float)
    if not view.radiological:
        return prompt
    height, width = shape  # stored (row i, column j) is shown at (row W-1-j, column H-1-i)
    if prompt.size == 2:
        return np.array([height - 1 - prompt[1], width - 1 - prompt[0]])
    x0, y0, x1, y1 = prompt
    return np.array([height - 1 - y1, width - 1 - x1, height - 1 - y0, width - 1 - x0])


def pick_slices(truth: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` slices with foreground, evenly spread over the split (stable choice)."""
    candidates = np.flatnonzero(truth.reshape(len(truth), -1).any(axis=1))
    if len(candidates) == 0:
        candidates = np.arange(len(truth))
    if len(candidates) <= count:
        return candidates.tolist()
    return candidates[np.linspace(0, len(candidates) - 1, count).round().astype(int)].tolist()


def _draw_prompt(axis: Any, prompt: np.ndarray) -> None:
    from matplotlib.patches import Rectangle

    if prompt.size == 2:
        axis.plot(prompt[0], prompt[1], marker="*", markersize=11, color=PROMPT_COLOUR, markeredgecolor="black",
                  markeredgewidth=0.8, linestyle="none")
        return
    x0, y0, x1, y1 = prompt
    axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=PROMPT_COLOUR,
                             linewidth=1.4))


def _edge_letters(axis: Any, view: View, size: tuple[int, int]) -> None:
    if not view.radiological or view.slice_axis not in EDGES:
        return
    top, bottom, left, right = EDGES[view.slice_axis]
    height, width = size
    style = {"color": "white", "fontsize": 7, "fontweight": "bold", "ha": "center", "va": "center"}
    for text, x, y in ((top, width / 2, height * 0.05), (bottom, width / 2, height * 0.95),
                       (left, width * 0.05, height / 2), (right, width * 0.95, height / 2)):
        axis.text(x, y, text, **style)


def _panel(axis: Any, image: np.ndarray, labels: np.ndarray | None, colours: Any, num_classes: int) -> None:
    axis.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if labels is not None:
        axis.imshow(np.ma.masked_equal(labels, 0), cmap=colours, vmin=0, vmax=max(num_classes - 1, 1), alpha=0.5,
                    interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)


def _draw_row(axes: Any, data: OverlaySlices, row: int, view: View, colours: Any, num_classes: int) -> None:
    image = to_display(data.images[row], view)
    layers = (None, to_display(data.truth[row], view), to_display(data.predicted[row], view))
    for column, labels in enumerate(layers):
        _panel(axes[column], image, labels, colours, num_classes)
    _edge_letters(axes[0], view, image.shape)
    if data.prompts is not None:
        prompt = prompt_to_display(data.prompts[row], data.images[row].shape, view)
        for column in (0, 2):
            _draw_prompt(axes[column], prompt)
    axes[0].set_ylabel(data.titles[row], fontsize=8)
    if data.scores is not None:
        axes[2].set_xlabel(data.scores[row], fontsize=8)


def _headers(axes: Any, prompt_kind: str | None, prompted: bool) -> None:
    marked = f" + {prompt_kind} prompt" if prompt_kind else ""
    names = (f"image{marked}", "ground truth" + (" (prompted object)" if prompted else ""), f"prediction{marked}")
    for axis, name in zip(axes, names, strict=True):
        axis.set_title(name, fontsize=9)


def _legend(figure: Any, colours: Any, class_names: dict[int, str], prompt_kind: str | None) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(facecolor=colours(k), alpha=0.6, label=name) for k, name in sorted(class_names.items())]
    if prompt_kind == "point":
        handles.append(Line2D([], [], marker="*", color=PROMPT_COLOUR, markeredgecolor="black", linestyle="none",
                              markersize=10, label="point prompt"))
    elif prompt_kind == "box":
        handles.append(Patch(facecolor="none", edgecolor=PROMPT_COLOUR, label="box prompt"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)


def write_overlays(path: Path, data: OverlaySlices, view: View, class_names: dict[int, str],
                   heading: str) -> None:
    """A PNG grid: one row per slice (labelled on the left), columns image / truth / prediction (classes in
    colour over the image, named in the legend), under ``heading`` and the view's caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_classes = max(class_names, default=1) + 1
    rows = max(len(data.images), 1)
    figure, axes = plt.subplots(rows, 3, figsize=(8.4, 2.7 * rows + 1.3), squeeze=False)
    colours = plt.get_cmap("tab10", max(num_classes, 2))
    kind = None if not data.prompts else ("point" if np.asarray(data.prompts[0]).size == 2 else "box")
    for row in range(len(data.images)):
        _draw_row(axes[row], data, row, view, colours, num_classes)
    _headers(axes[0], kind, data.prompts is not None)
    _legend(figure, colours, class_names, kind)
    figure.suptitle(f"{heading}\n{view.caption}", fontsize=9)
    figure.tight_layout(rect=(0, 0.4 / (2.7 * rows + 1.3), 1, 1))
    figure.savefig(path, dpi=80)
    plt.close(figure)
