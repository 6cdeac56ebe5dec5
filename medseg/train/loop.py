"""One epoch of training and the validation score, on images or on cached embeddings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.eval.metrics import dice_per_class
from medseg.models.segmenter import SamSegmenter

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def forward(model: SamSegmenter, inputs: torch.Tensor, cached: bool) -> torch.Tensor:
    """Class logits from images, or from precomputed image embeddings when ``cached``."""
    return model.decode(inputs) if cached else model(inputs)


def train_epoch(model: SamSegmenter, loader: Any, loss_fn: Any, optimizer: Any, scheduler: Any, epoch: int,
                cached: bool, augment: Augment | None, generator: torch.Generator) -> float:
    """Mean training loss of one pass over ``loader``."""
    from tqdm import tqdm

    model.train()
    if model.encoder_is_frozen():
        model.image_encoder.eval()  # a frozen encoder keeps its normalisation statistics (TinyViT BatchNorm)
    losses = []
    for inputs, masks in tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False):
        if augment is not None:
            inputs = augment(inputs, generator)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward(model, inputs, cached), masks.unsqueeze(1))
        if not torch.isfinite(loss):
            raise MedsegError(f"training diverged: loss is {loss.item()} at epoch {epoch}")
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def mean_dice(model: SamSegmenter, loader: Any, cached: bool) -> float:
    """Mean foreground Dice over slices and classes (empty-vs-empty excluded)."""
    model.eval()
    scores = [dice_per_class(forward(model, inputs, cached).argmax(dim=1), masks, model.num_classes)
              for inputs, masks in loader]
    values = torch.cat(scores).flatten()
    values = values[~torch.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")
