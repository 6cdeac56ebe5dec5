"""Batches that are the same whatever the number of processes.

An epoch's order is one permutation drawn from the run's data generator (identical on every
process); it is cut into global batches of ``batch_size`` and each process takes a contiguous
share of every global batch. One process therefore sees exactly the batches of a single-process
run, and ``loss_scale`` weights each share so that the gradient averaged by DDP equals the
gradient of the whole global batch, also when the last batch is short. When a short last batch
leaves a process without a share, that process runs one slice with weight 0: it takes part in the
gradient exchange and adds nothing to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate


def global_batches(size: int, batch_size: int, generator: torch.Generator | None) -> list[list[int]]:
    """Index batches of one epoch: shuffled with ``generator``, in order when it is None."""
    order = torch.randperm(size, generator=generator) if generator is not None else torch.arange(size)
    indices = order.tolist()
    return [indices[start : start + batch_size] for start in range(0, size, batch_size)]


def local_share(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's contiguous share of a global batch (sizes differ by at most one)."""
    return batch[rank * len(batch) // world_size : (rank + 1) * len(batch) // world_size]


def loss_scale(share: int, batch: int, world_size: int) -> float:
    """Weight of a share's mean loss so that DDP's gradient average equals the global batch mean."""
    return share * world_size / batch


def iterate(dataset: Dataset, batch_size: int, generator: torch.Generator | None, rank: int = 0,
            world_size: int = 1) -> Iterator[tuple[Any, float]]:
    """``(collated local batch, loss scale)`` for each global batch of one epoch."""
    for batch in global_batches(len(dataset), batch_size, generator):
        share = local_share(batch, rank, world_size)
        scale = loss_scale(len(share), len(batch), world_size)
        yield default_collate([dataset[i] for i in share or batch[:1]]), scale


def count(dataset: Dataset, batch_size: int) -> int:
    """Number of batches ``iterate`` yields per epoch."""
    return -(-len(dataset) // batch_size)
