"""One epoch of training and the validation score, on images or cached embeddings, in any mode.

Batches come from ``medseg.train.batches`` (identical global batches for any number of processes);
a batch is ``(inputs, targets)`` in automated mode and ``(inputs, targets, prompts)`` in point and
box modes. The loss is computed in fp32 whatever the autocast precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.eval.metrics import dice_per_class
from medseg.models.segmenter import SamSegmenter
from medseg.train.batches import count, iterate, local_share
from medseg.train.runtime import Runtime

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Engine:
    """What one training step needs; ``trainer`` is the model itself or its DDP wrapper."""

    model: SamSegmenter
    trainer: nn.Module
    optimizer: Any
    scheduler: Any
    loss_fn: Any
    runtime: Runtime
    embedded: bool  # inputs are cached image embeddings
    augment: Augment | None = None


def _unpack(batch: list[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
    inputs, targets, *rest = (tensor.to(device) for tensor in batch)
    return inputs, targets, (rest[0] if rest else None)


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def training_mode(model: SamSegmenter) -> None:
    """Train mode, except that the image encoder keeps its normalisation statistics: a frozen encoder is in
    eval mode, and a trained one's BatchNorm layers (TinyViT) are. Batch statistics of a few slices would
    change the features that the pretrained decoder and prompt encoder read (box prompts from a pretrained
    ViT-T collapsed) and the running statistics of layers the strategy freezes; affine weights still train."""
    model.train()
    if model.encoder_is_frozen():
        model.image_encoder.eval()
        return
    for module in model.image_encoder.modules():
        if isinstance(module, BATCH_NORMS):
            module.eval()


def train_epoch(engine: Engine, dataset: Any, batch_size: int, epoch: int, data_generator: torch.Generator,
                augment_generator: torch.Generator) -> float:
    """Mean training loss (of the global batches) of one pass over ``dataset``."""
    from tqdm import tqdm

    runtime, model = engine.runtime, engine.model
    training_mode(model)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    batches = iterate(dataset, batch_size, data_generator, runtime.rank, runtime.world_size)
    total, steps = 0.0, 0
    for batch, scale in tqdm(batches, total=count(dataset, batch_size), desc=f"epoch {epoch}",
                             unit="batch", leave=False, disable=not runtime.is_main):
        if engine.augment is not None:
            batch[0] = engine.augment(batch[0], augment_generator)
        inputs, targets, prompts = _unpack(batch, runtime.device)
        engine.optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            logits = engine.trainer(inputs, prompts, embedded=engine.embedded)
        loss = engine.loss_fn(logits.float(), targets.unsqueeze(1))
        if not torch.isfinite(loss):
            raise MedsegError(f"training diverged: loss is {loss.item()} at epoch {epoch}")
        (loss * scale).backward()
        engine.optimizer.step()
        engine.scheduler.step()
        total += loss.item() * scale / runtime.world_size
        steps += 1
    return float(runtime.sum_over_processes(torch.tensor([total], dtype=torch.float64))[0]) / max(steps, 1)


@torch.no_grad()
def mean_dice(engine: Engine, dataset: Any, batch_size: int) -> float:
    """Mean foreground Dice over slices and classes (empty-vs-empty excluded), shared across processes."""
    runtime, model = engine.runtime, engine.model
    model.eval()
    share = local_share(list(range(len(dataset))), runtime.rank, runtime.world_size)
    total = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(share), batch_size):
        batch = torch.utils.data.default_collate([dataset[i] for i in share[start : start + batch_size]])
        inputs, targets, prompts = _unpack(batch, runtime.device)
        with runtime.autocast():
            predicted = model(inputs, prompts, embedded=engine.embedded).argmax(dim=1)
        values = dice_per_class(predicted.cpu(), targets.cpu(), model.num_classes).flatten()
        values = values[~torch.isnan(values)]
        total += torch.tensor([values.sum().item(), len(values)], dtype=torch.float64)
    total = runtime.sum_over_processes(total)
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")
