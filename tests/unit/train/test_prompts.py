"""Prompt simulation: tight and noisy boxes, interior points, components and sampling."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.train.prompts import (
    components,
    edge_distance,
    interior_point,
    noisy_box,
    perturb_box,
    sample_prompt,
    tight_box,
)


def _rectangle(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[rows, cols] = 1
    return mask


def _l_shape() -> np.ndarray:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:50, 10:20] = 1
    mask[40:50, 10:45] = 1
    return mask


def _annulus() -> np.ndarray:
    rows, cols = np.mgrid[:65, :65]
    radius = np.hypot(rows - 32, cols - 32)
    return ((radius >= 15) & (radius <= 25)).astype(np.uint8)


def test_tight_box_of_a_rectangle() -> None:
    assert tight_box(_rectangle((32, 48), slice(5, 12), slice(20, 31))) == (20, 5, 30, 11)


def test_noisy_box_statistics() -> None:
    mask = _rectangle((512, 512), slice(200, 300), slice(150, 350))  # width 200, height 100
    rng = np.random.default_rng(0)
    boxes = np.stack([noisy_box(mask, rng) for _ in range(4000)])
    offsets = boxes - np.array(tight_box(mask), dtype=np.float32)
    assert np.abs(offsets).max() <= 20.0 + 1e-4
    # Height 100 -> std 10 px (barely capped); width 200 -> std 20 px, capped at 20.
    assert np.allclose(offsets[:, [1, 3]].std(axis=0), 10.0, rtol=0.1)
    assert np.allclose(offsets.mean(axis=0), 0.0, atol=1.0)
    assert (np.abs(offsets[:, [0, 2]]) > 19.99).mean() > 0.2


def test_noisy_box_small_object_std_is_ten_percent_of_side() -> None:
    mask = _rectangle((128, 128), slice(40, 80), slice(40, 60))  # height 40, width 20
    rng = np.random.default_rng(1)
    offsets = np.stack([noisy_box(mask, rng) for _ in range(4000)]) - np.array(tight_box(mask))
    assert np.allclose(offsets.std(axis=0), [2.0, 4.0, 2.0, 4.0], rtol=0.1)


def test_big_boxes_cap_at_max_noise_and_clip_to_image() -> None:
    mask = _rectangle((1024, 1024), slice(0, 1024), slice(2, 1000))
    rng = np.random.default_rng(2)
    boxes = np.stack([noisy_box(mask, rng) for _ in range(500)])
    offsets = boxes - np.array(tight_box(mask))
    assert np.abs(offsets).max() <= 20.0 + 1e-4 and np.abs(offsets[:, 2]).max() > 19.0
    assert boxes.min() >= 0.0 and boxes[:, [0, 2]].max() <= 1023 and boxes[:, [1, 3]].max() <= 1023
    assert (boxes[:, 1] == 0).mean() > 0.4 and (boxes[:, 3] == 1023).mean() > 0.4
    custom = noisy_box(mask, rng, noise_fraction=0.5, max_noise=3.0, image_size=(1024, 1100))
    assert np.abs(custom[[0, 2]] - [2, 999]).max() <= 3.0
    assert np.array_equal(perturb_box((0, 0, 9, 9), rng, 10, noise_fraction=0.0), [0, 0, 9, 9])
    with pytest.raises(ValueError, match=">= 0"):
        perturb_box((0, 0, 9, 9), rng, 10, noise_fraction=-0.1)


@pytest.mark.parametrize("mask", [_l_shape(), _annulus()], ids=["L", "annulus"])
def test_interior_point_is_inside_and_above_median(mask: np.ndarray) -> None:
    distance = edge_distance(mask)
    median = np.median(distance[mask > 0])
    rng = np.random.default_rng(3)
    points = {interior_point(mask, rng) for _ in range(300)}
    assert len(points) > 5
    for x, y in points:
        assert mask[y, x] == 1 and distance[y, x] > median


def test_annulus_centre_is_outside_and_never_sampled() -> None:
    mask = _annulus()
    assert mask[32, 32] == 0
    rng = np.random.default_rng(4)
    assert all(mask[y, x] for x, y in (interior_point(mask, rng) for _ in range(200)))


def test_thin_line_falls_back_to_max_distance() -> None:
    mask = _rectangle((16, 16), slice(8, 9), slice(2, 14))
    x, y = interior_point(mask, np.random.default_rng(0))
    assert y == 8 and 2 <= x < 14


def test_image_border_counts_as_edge() -> None:
    mask = np.ones((9, 9), dtype=np.uint8)
    assert interior_point(mask, np.random.default_rng(0)) != (0, 0)
    assert edge_distance(mask)[0, 0] == 1.0 and edge_distance(mask)[4, 4] == 5.0


def test_components_use_8_connectivity() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[1, 1] = mask[2, 2] = 1  # diagonal neighbours: one region
    mask[5:7, 5:7] = 1
    regions = components(mask)
    assert [int(region.sum()) for region in regions] == [2, 4]


def test_seeded_sampling_is_deterministic() -> None:
    mask = _l_shape() * 2
    mask[55:60, 50:60] = 3
    for kind in ("box", "point"):
        first = sample_prompt(mask, np.random.default_rng(7), kind)
        second = sample_prompt(mask, np.random.default_rng(7), kind)
        assert np.array_equal(first[0], second[0]) and first[1].label == second[1].label
        for field in ("box", "points"):
            a, b = getattr(first[1], field), getattr(second[1], field)
            assert (a is None and b is None) or np.array_equal(a, b)


def test_multiclass_mask_picks_existing_classes_only() -> None:
    mask = np.zeros((64, 64), dtype=np.int64)
    mask[5:15, 5:15] = 2
    mask[30:40, 30:50] = 5
    rng = np.random.default_rng(8)
    labels = set()
    for _ in range(60):
        target, prompt = sample_prompt(mask, rng, "point")
        labels.add(prompt.label)
        assert target.dtype == np.uint8 and target.shape == mask.shape
        assert np.all(mask[target == 1] == prompt.label)
        x, y = prompt.points[0].astype(int)
        assert target[y, x] == 1 and prompt.point_labels.tolist() == [1] and prompt.box is None
    assert labels == {2, 5}


def test_component_target_excludes_other_components() -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    mask[40:60, 40:50] = 1
    rng = np.random.default_rng(9)
    sizes = set()
    for _ in range(40):
        target, prompt = sample_prompt(mask, rng, "box")
        sizes.add(int(target.sum()))
        assert prompt.box is not None and prompt.points is None
        x0, y0, x1, y1 = tight_box(target)
        assert np.abs(prompt.box - [x0, y0, x1, y1]).max() <= 20.0 + 1e-4
    assert sizes == {100, 200}


def test_empty_mask_and_bad_kind_raise() -> None:
    empty = np.zeros((8, 8), dtype=np.uint8)
    for call in (lambda: sample_prompt(empty, np.random.default_rng(0), "box"), lambda: tight_box(empty),
                 lambda: interior_point(empty, np.random.default_rng(0))):
        with pytest.raises(ValueError, match="no foreground"):
            call()
    with pytest.raises(ValueError, match="kind"):
        sample_prompt(_l_shape(), np.random.default_rng(0), "scribble")  # type: ignore[arg-type]
