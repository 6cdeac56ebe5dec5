"""The overlay figure's display rule (radiological view of RAS+ slices, files as stored) and its prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.eval.overlays import OverlaySlices, View, prompt_to_display, to_display, view_for, write_overlays

RADIOLOGICAL = View(radiological=True, slice_axis=2)


def test_ras_slices_show_anterior_up_and_the_patient_s_right_on_the_left() -> None:
    stored = np.zeros((6, 4), np.uint8)  # axial RAS+ slice: rows = x (towards the right), columns = y (anterior)
    stored[5, 3] = 1  # the most right and most anterior pixel
    stored[0, 0] = 2  # the most left and most posterior pixel
    shown = to_display(stored, RADIOLOGICAL)
    assert shown.shape == (4, 6) and shown[0, 0] == 1 and shown[-1, -1] == 2


def test_file_images_are_shown_as_stored() -> None:
    stored = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(to_display(stored, View(radiological=False)), stored)


@pytest.mark.parametrize("view", [RADIOLOGICAL, View(radiological=False)])
def test_prompts_move_with_the_slice(view: View) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = int(rng.integers(7)), int(rng.integers(5))  # stored (H, W) = (5, 7); x = column, y = row
        stored = np.zeros((5, 7), np.uint8)
        stored[y, x] = 1
        px, py = prompt_to_display(np.array([x, y]), stored.shape, view).astype(int)
        assert to_display(stored, view)[py, px] == 1
    box = np.array([1, 2, 5, 3])  # x0, y0, x1, y1 (inclusive)
    stored = np.zeros((5, 7), np.uint8)
    stored[2:4, 1:6] = 1
    rows, cols = np.nonzero(to_display(stored, view))
    assert prompt_to_display(box, stored.shape, view).tolist() == [cols.min(), rows.min(), cols.max(), rows.max()]


def test_the_view_comes_from_ingest_json_or_else_the_source_file_type() -> None:
    assert view_for({"orientation": "RAS+", "slice_axis": 0}, "x.png") == View(True, 0)
    assert view_for({"orientation": "file"}, "case.nii.gz") == View(False, 2)
    assert view_for({}, "Dataset_BUSI_with_GT/benign/benign (1).png") == View(False, 2)  # ingested before the flag
    assert view_for({"slice_axis": 2}, "imagesTr/case.nii.gz") == View(True, 2)


def test_the_phantom_s_spine_is_shown_at_the_bottom(ingested_sample: Path) -> None:
    """End to end: the phantom is written with an LPS-like affine, ingest stores RAS+, the figure shows
    the spine (posterior, the brightest structure) in the lower part of the image, left-right centred."""
    import json

    images = np.load(ingested_sample / "images.npy")
    summary = json.loads((ingested_sample / "ingest.json").read_text())
    view = view_for(summary, "imagesTr/phantom_001.nii.gz")
    assert view.radiological
    for image in images[:: max(len(images) // 5, 1)]:
        rows, cols = np.nonzero(to_display(image, view) == 255)
        assert rows.mean() > 0.7 * image.shape[1] and abs(cols.mean() - image.shape[0] / 2) < 0.15 * image.shape[0]


def _png_colours(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)


def test_box_prompts_and_class_names_are_drawn(tmp_path: Path) -> None:
    images = np.full((2, 32, 32), 90, np.uint8)
    truth = np.zeros((2, 32, 32), np.uint8)
    truth[:, 8:20, 10:22] = 1
    data = OverlaySlices(images, truth, truth.copy(), ["case_1\nslice 3", "case_2\nslice 4"], scores=["Dice 1.00"] * 2)
    write_overlays(tmp_path / "plain.png", data, RADIOLOGICAL, {1: "lesion"}, "sample / automated / m")
    boxes = [np.array([9.0, 7.0, 22.0, 21.0])] * 2
    write_overlays(tmp_path / "box.png", OverlaySlices(images, truth, truth.copy(), data.titles, boxes),
                   RADIOLOGICAL, {1: "prompted object"}, "sample / box / m")
    gold = np.array([255, 215, 0])  # the prompt colour
    near_gold = [int((np.abs(_png_colours(tmp_path / name) - gold).max(axis=1) < 40).sum()) for name in
                 ("plain.png", "box.png")]
    assert near_gold[0] == 0 and near_gold[1] > 100
