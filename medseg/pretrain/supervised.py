"""SupSAM's model and data: SAM prompted with a point or a box per image, over many datasets at once.

Each item prompts one object of one slice (``medseg.train.prompts``: a class present in the slice, then one
of its regions), so every dataset keeps its own label map and no global label space is needed: the target
is the prompted region alone. Whether an item gets a point or a box is drawn per item, with equal
probability in the study, from (seed, stream, epoch, index): the same for any number of processes and
after a resume.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from medseg.errors import MedsegError
from medseg.models.segmenter import SamSegmenter
from medseg.train.prompted import PromptedDataset, PromptSettings, prompted_split

KINDS = ("point", "box")  # a prompt row: [kind index, x0, y0, x1, y1] (a point uses x0, y0)
PROMPT_ROW = 5


class MixedPromptSegmenter(SamSegmenter):
    """SAM with one point or one box per image: prompts (B, 5) rows ``[0, x, y, 0, 0]`` (a point) or
    ``[1, x0, y0, x1, y1]`` (a box); outputs background + the prompted object."""

    def __init__(self, backbone: str, image_size: int) -> None:
        super().__init__(backbone, image_size, 2, "box")

    def _check_prompts(self, prompts: torch.Tensor | None, inputs: torch.Tensor) -> None:
        batch = int(inputs.shape[0])
        if prompts is None or tuple(prompts.shape) != (batch, PROMPT_ROW):
            shape = None if prompts is None else tuple(prompts.shape)
            raise MedsegError(f"a mixed-prompt model needs prompts of shape ({batch}, {PROMPT_ROW}), got {shape}")

    def _prompt_embeddings(self, prompts: torch.Tensor | None, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = prompts[index].float()
        if row[0] > 0.5:
            return self.prompt_encoder(points=None, boxes=row[1:5].view(1, 4), masks=None)
        labels = torch.ones(1, 1, dtype=torch.long, device=row.device)  # one foreground point
        return self.prompt_encoder(points=(row[1:3].view(1, 1, 2), labels), boxes=None, masks=None)


class MixedPromptDataset(Dataset):
    """``(image, target, prompt row (5,))`` per foreground slice: a point or a box, drawn per item."""

    def __init__(self, points: PromptedDataset, boxes: PromptedDataset, point_probability: float) -> None:
        if points.indices != boxes.indices:
            raise MedsegError("point and box prompts must cover the same slices")
        self.points, self.boxes, self.point_probability = points, boxes, point_probability
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.points.set_epoch(epoch)
        self.boxes.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.points)

    def kind(self, index: int) -> str:
        rng = np.random.default_rng([self.points.seed, self.points.stream, self.epoch, index, len(KINDS)])
        return "point" if rng.random() < self.point_probability else "box"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kind = self.kind(index)
        image, target, coordinates = (self.points if kind == "point" else self.boxes)[index]
        row = torch.zeros(PROMPT_ROW, dtype=torch.float32)
        row[0] = float(KINDS.index(kind))
        row[1 : 1 + len(coordinates)] = coordinates
        return image, target, row


class EpochConcat(ConcatDataset):
    """Datasets one after another, passing each epoch on (new prompts every training epoch)."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            part.set_epoch(epoch)


def mixed_split(splits: list, settings: PromptSettings, point_probability: float, seed: int,
                stream: int) -> EpochConcat:
    """Every dataset's slices of one split (``splits``: a ``SliceDataset`` each, with its own label map), each
    foreground slice prompted by a point or a box; one dataset over all of them."""
    parts = []
    for number, slices in enumerate(splits):
        point, box = (prompted_split(slices, slices, kind, settings, seed, stream * 1000 + number) for kind in KINDS)
        parts.append(MixedPromptDataset(point, box, point_probability))
    return EpochConcat(parts)
