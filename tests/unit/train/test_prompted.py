"""Point and box training items: reproducible prompts inside the prompted region, foreground only."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.train.prompted import PromptedDataset, PromptSettings


class _Slices(Dataset):
    def __init__(self) -> None:
        self.masks = np.zeros((3, 32, 32), dtype=np.int64)
        self.masks[0, 4:10, 4:12] = 1
        self.masks[0, 20:28, 18:30] = 2  # two classes on slice 0
        self.masks[2, 10:22, 8:16] = 1  # slice 1 is empty

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full((3, 32, 32), float(index)), torch.from_numpy(self.masks[index])


def _dataset(kind: str, stream: int = 0) -> PromptedDataset:
    slices = _Slices()
    return PromptedDataset(slices, slices.masks.reshape(3, -1).any(axis=1), kind, PromptSettings(), 7, stream)


def test_empty_slices_are_left_out_and_targets_are_one_prompted_region() -> None:
    dataset = _dataset("point")
    assert len(dataset) == 2
    for index in range(len(dataset)):
        image, target, point = dataset[index]
        source = _Slices().masks[int(image[0, 0, 0])]
        assert set(target.unique().tolist()) == {0, 1} and (source[target.numpy() == 1] > 0).all()
        assert len(np.unique(source[target.numpy() == 1])) == 1  # one class only
        x, y = point.tolist()
        assert target[int(y), int(x)] == 1 and point.shape == (2,)


def test_prompts_depend_on_epoch_and_index_only() -> None:
    first, second = _dataset("box"), _dataset("box")
    draws = [tuple(first[0][2].tolist()) for _ in range(3)]
    assert len(set(draws)) == 1 and torch.equal(first[1][2], second[1][2])
    epochs = set()
    for epoch in range(8):
        first.set_epoch(epoch)
        epochs.add(tuple(first[1][2].tolist()))
    assert len(epochs) > 1  # training draws new prompts each epoch
    assert not torch.equal(_dataset("box", stream=1)[1][2], second[1][2])  # validation has its own stream


def test_boxes_stay_within_noise_of_the_region() -> None:
    dataset = _dataset("box")
    for epoch in range(5):
        dataset.set_epoch(epoch)
        _, target, box = dataset[1]
        rows, cols = np.nonzero(target.numpy())
        tight = np.array([cols.min(), rows.min(), cols.max(), rows.max()])
        assert box.shape == (4,) and np.all(np.abs(box.numpy() - tight) <= 20 + 1e-5)
