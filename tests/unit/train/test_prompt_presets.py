"""The ``released_code`` box-prompt preset: the largest regions' union, outward uniform box noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.train.prompted import PromptedDataset, PromptSettings
from medseg.train.prompts import largest_regions, outward_box, sample_prompt, tight_box


def _four_regions() -> np.ndarray:
    """One class in four separate regions of 400, 150, 64 and 9 pixels, plus a class-2 region."""
    mask = np.zeros((96, 96), dtype=np.uint8)
    mask[5:25, 5:25] = 1  # 400
    mask[40:50, 60:75] = 1  # 150
    mask[70:78, 10:18] = 1  # 64
    mask[85:88, 85:88] = 1  # 9
    mask[60:64, 40:44] = 2
    return mask


def test_target_is_the_union_of_the_three_largest_regions_of_the_class() -> None:
    mask = _four_regions()
    for seed in range(30):
        target, prompt = sample_prompt(mask, np.random.default_rng(seed), "box", box_preset="released_code")
        expected = np.isin(mask, [1]) if prompt.label == 1 else mask == 2
        if prompt.label == 1:
            expected[85:88, 85:88] = False  # the fourth, smallest region is left out
        assert np.array_equal(target.astype(bool), expected), seed
        x0, y0, x1, y1 = tight_box(target)
        box = prompt.box
        assert box[0] <= x0 and box[1] <= y0 and box[2] >= x1 and box[3] >= y1  # outward only
        reach = 0.1 * np.array([x1 - x0, y1 - y0])
        assert x0 - box[0] <= reach[0] + 1e-4 and box[2] - x1 <= reach[0] + 1e-4
        assert y0 - box[1] <= reach[1] + 1e-4 and box[3] - y1 <= reach[1] + 1e-4


def test_region_count_is_a_setting() -> None:
    mask = (_four_regions() == 1).astype(np.uint8)
    assert largest_regions(mask, 1).sum() == 400
    assert largest_regions(mask, 2).sum() == 550
    assert largest_regions(mask, 10).sum() == 623  # fewer regions than asked: all of them
    with pytest.raises(ValueError):
        largest_regions(mask, 0)


def test_outward_noise_is_uniform_up_to_the_fraction_of_the_side() -> None:
    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[50:151, 60:121] = 1  # sides (max - min): 60 wide, 100 high
    rng = np.random.default_rng(0)
    boxes = np.stack([outward_box(mask, rng, 0.1) for _ in range(4000)])
    offsets = np.abs(boxes - np.array([60, 50, 120, 150]))
    reach = np.array([6.0, 10.0, 6.0, 10.0])
    assert (offsets <= reach + 1e-4).all()
    assert offsets.mean(axis=0) == pytest.approx(reach / 2, rel=0.05)  # uniform on [0, reach]: mean reach / 2
    assert offsets.max(axis=0) == pytest.approx(reach, rel=0.01)


def test_boxes_stay_inside_the_image() -> None:
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[0:40, 0:50] = 1
    box = outward_box(mask, np.random.default_rng(1), 0.5)
    assert box.tolist() == [0.0, 0.0, 49.0, 39.0]


def test_released_code_boxes_are_deterministic_and_points_keep_the_paper_simulation() -> None:
    mask = _four_regions()
    first = sample_prompt(mask, np.random.default_rng(3), "box", box_preset="released_code")
    again = sample_prompt(mask, np.random.default_rng(3), "box", box_preset="released_code")
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1].box, again[1].box)
    for kind in ("point", "box"):  # the default preset is the paper's, unchanged
        paper = sample_prompt(mask, np.random.default_rng(5), kind)
        explicit = sample_prompt(mask, np.random.default_rng(5), kind, box_preset="paper")
        coordinates = [p[1].box if kind == "box" else p[1].points for p in (paper, explicit)]
        assert np.array_equal(paper[0], explicit[0]) and np.array_equal(*coordinates)
    point = sample_prompt(mask, np.random.default_rng(5), "point", box_preset="released_code")
    assert point[1].kind == "point" and point[0].sum() in (400, 150, 64, 9, 16)  # one region, as in the paper
    with pytest.raises(ValueError, match="box_preset"):
        sample_prompt(mask, np.random.default_rng(0), "box", box_preset="sam")


class _Slices(torch.utils.data.Dataset):
    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.from_numpy(self.masks[index].astype(np.int64))
        return mask.float().expand(3, -1, -1), mask


def test_prompted_dataset_uses_the_preset_and_stays_deterministic_per_epoch() -> None:
    masks = [_four_regions(), (_four_regions() == 1).astype(np.uint8)]
    settings = PromptSettings(box_preset="released_code", largest_regions=2)
    dataset = PromptedDataset(_Slices(masks), np.ones(2, dtype=bool), "box", settings, seed=9, stream=0)
    _, target, box = dataset[1]
    assert int(target.sum()) == 550  # the two largest regions of the single class
    twin = PromptedDataset(_Slices(masks), np.ones(2, dtype=bool), "box", settings, seed=9, stream=0)
    assert torch.equal(twin[1][2], box)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1][2], box)  # a new epoch draws new noise
