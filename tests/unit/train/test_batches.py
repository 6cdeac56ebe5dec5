"""Global batches: every process count sees the same batches, and loss weights restore the global mean."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from medseg.train.batches import count, global_batches, iterate, local_share, loss_scale


def test_shares_of_every_process_make_up_the_single_process_batches() -> None:
    single = global_batches(11, 4, torch.Generator().manual_seed(3))
    again = global_batches(11, 4, torch.Generator().manual_seed(3))
    assert single == again and sorted(i for batch in single for i in batch) == list(range(11))
    assert [len(b) for b in single] == [4, 4, 3]
    for batch in single:
        assert local_share(batch, 0, 2) + local_share(batch, 1, 2) == batch
    assert global_batches(5, 2, None) == [[0, 1], [2, 3], [4]]


def test_loss_scale_turns_share_means_into_the_global_batch_mean() -> None:
    losses = torch.tensor([0.3, 0.9, 0.5])  # per-sample losses of a global batch of 3 on 2 processes
    shares = [local_share([0, 1, 2], rank, 2) for rank in range(2)]
    averaged = sum(losses[s].mean() * loss_scale(len(s), 3, 2) for s in shares) / 2  # what DDP averages
    assert float(averaged) == pytest.approx(float(losses.mean()))


def test_a_process_without_a_share_runs_one_slice_with_weight_zero() -> None:
    dataset = TensorDataset(torch.arange(9))
    alone = list(iterate(dataset, 4, None))
    assert [len(batch[0]) for batch, _ in alone] == [4, 4, 1] and count(dataset, 4) == 3
    first = list(iterate(dataset, 4, None, rank=0, world_size=2))
    second = list(iterate(dataset, 4, None, rank=1, world_size=2))
    assert [batch[0].tolist() for batch, _ in first] == [[0, 1], [4, 5], [8]]
    assert [batch[0].tolist() for batch, _ in second] == [[2, 3], [6, 7], [8]]
    assert [scale for _, scale in first] == [1.0, 1.0, 0.0] and second[-1][1] == 2.0
