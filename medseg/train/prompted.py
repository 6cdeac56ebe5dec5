"""Point and box training data: every slice with foreground gets one simulated prompt.

The prompt of an item depends only on (seed, stream, epoch, index), so a run draws the same prompts
whatever the number of processes and after a resume; training sets a new epoch each pass (new
prompts), validation keeps epoch 0 (the same prompts every time). The target is the prompted region
alone (class 1), as in the study's prompt training. Slices without foreground cannot be prompted
and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.train.prompts import Prompt, sample_prompt


@dataclass(frozen=True)
class PromptSettings:
    """The prompt simulation (``finetune.prompts``): the paper's boxes (Gaussian noise, std = fraction x
    side, capped at ``box_max_noise`` px) or, with ``box_preset`` released_code, the released code's (the
    ``largest_regions`` largest regions, outward noise up to fraction x side; see ``medseg.train.prompts``)."""

    box_noise_fraction: float = 0.1
    box_max_noise: float = 20.0
    box_preset: str = "paper"
    largest_regions: int = 3


class PromptedDataset(Dataset):
    """``(input, target int64 (S, S) of 0/1, prompt float32 (2,) point or (4,) box)`` per foreground slice.

    ``base`` yields ``(input, label mask)``; ``foreground`` says which of its items have any."""

    def __init__(self, base: Dataset, foreground: np.ndarray, kind: str, settings: PromptSettings, seed: int,
                 stream: int) -> None:
        self.base, self.kind, self.settings = base, kind, settings
        self.seed, self.stream, self.epoch = seed, stream, 0
        self.indices = np.flatnonzero(np.asarray(foreground, dtype=bool)).tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):  # e.g. per-epoch augmentation of the base slices
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def _prompt(self, index: int, mask: torch.Tensor) -> tuple[np.ndarray, Prompt]:
        """Item ``index``'s prompt: the same for a given seed, stream, epoch and item."""
        rng = np.random.default_rng([self.seed, self.stream, self.epoch, index])
        settings = self.settings
        return sample_prompt(mask.numpy(), rng, self.kind, settings.box_noise_fraction, settings.box_max_noise,
                             settings.box_preset, settings.largest_regions)

    def prompted_class(self, index: int) -> int:
        """The class (label value in the mask) of the object item ``index`` prompts."""
        return self._prompt(index, self.base[self.indices[index]][1])[1].label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, mask = self.base[self.indices[index]]
        target, prompt = self._prompt(index, mask)
        coordinates = prompt.box if self.kind == "box" else prompt.points[0]
        return inputs, torch.from_numpy(target.astype(np.int64)), torch.from_numpy(coordinates.copy())


def prompted_split(slices: SliceDataset, base: Dataset, kind: str, settings: PromptSettings, seed: int,
                   stream: int) -> PromptedDataset:
    """``base`` (items of ``slices``, e.g. their cached embeddings) with one prompt per foreground slice."""
    foreground = np.array([bool(np.asarray(slices.masks[row]).any()) for row in slices.rows], dtype=bool)
    if not foreground.any():
        raise MedsegError(f"the {slices.split} split has no slice with foreground to prompt ({kind} mode)",
                          slices.data_dir / "manifest.parquet")
    return PromptedDataset(base, foreground, kind, settings, seed, stream)
