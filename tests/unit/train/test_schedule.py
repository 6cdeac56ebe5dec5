"""Learning-rate schedules: linear warm-up, then constant or the released code's polynomial decay."""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from pathlib import Path

import pytest
import torch

from helpers import tiny_params
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.train.config import TrainConfig, WarmupSchedule, set_total_steps, warmup_factor
from medseg.train.finetune import finetune


def _released_code_lr(step: int, lr: float, warmup: int, total: int) -> float:
    """The released code's rule (SingleGPU_train_finetune_noprompt.py) for the lr of optimiser step ``step``,
    written independently of ours: (step + 1) / warmup during warm-up, then lr (1 - shift / total)^0.9."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (1.0 - (step - warmup) / total) ** 0.9


def _scheduler(schedule: WarmupSchedule, lr: float = 1e-4) -> torch.optim.lr_scheduler.LambdaLR:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _lrs(scheduler: torch.optim.lr_scheduler.LambdaLR, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_poly_follows_the_released_code_decay() -> None:
    scheduler = _scheduler(WarmupSchedule(4, "poly", total_steps=30))
    lrs = _lrs(scheduler, 30)
    assert lrs == pytest.approx([_released_code_lr(step, 1e-4, 4, 30) for step in range(30)], rel=1e-12)
    assert lrs[:5] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4])
    assert lrs[-1] == pytest.approx(1e-4 * (5 / 30) ** 0.9)  # T counts the warm-up too: never reaches 0
    assert all(later < earlier for earlier, later in itertools.pairwise(lrs[4:]))


def test_constant_schedule_is_the_warmup_then_flat() -> None:
    schedule = WarmupSchedule(4, "constant", total_steps=10)
    assert [schedule(step) for step in range(50)] == [warmup_factor(step, 4) for step in range(50)]
    assert WarmupSchedule(0, "poly")(0) == 1.0  # no warm-up: the first step runs at the full lr


def test_poly_without_its_length_fails_instead_of_guessing() -> None:
    schedule = WarmupSchedule(2, "poly")
    assert schedule(2) == 1.0
    with pytest.raises(MedsegError, match="total optimiser steps"):
        schedule(3)


def test_poly_resumes_exactly_from_a_saved_scheduler_state() -> None:
    straight = _lrs(_scheduler(WarmupSchedule(3, "poly", total_steps=40)), 40)
    first = _scheduler(WarmupSchedule(3, "poly", total_steps=40))
    head = _lrs(first, 17)
    buffer = io.BytesIO()
    torch.save({"scheduler": first.state_dict(), "optimizer": first.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # as medseg.train.state reads it
    second = _scheduler(WarmupSchedule(3, "poly"))  # the length comes back with the state
    second.optimizer.load_state_dict(saved["optimizer"])
    second.load_state_dict(saved["scheduler"])
    assert second.lr_lambdas[0].total_steps == 40
    assert head + _lrs(second, 23) == straight


def test_set_total_steps_reaches_the_schedule_inside_lambdalr() -> None:
    scheduler = _scheduler(WarmupSchedule(1, "poly"))
    set_total_steps(scheduler, 12)
    assert scheduler.lr_lambdas[0].total_steps == 12


def test_a_poly_run_decays_over_max_epochs_of_batches(ingested_sample: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TrainConfig.from_params(tiny_params()), lr_schedule="poly", warmup_iters=1,
                                 max_epochs=2, early_stopping_patience=0)
    finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "out", config, tmp_path / "work")
    batches = math.ceil(len(SliceDataset(ingested_sample, "train")) / config.batch_size)
    total = config.max_epochs * batches
    rows = (tmp_path / "out/training/plots/metrics/lr.tsv").read_text().splitlines()[1:]
    logged = [float(row.split("\t")[1]) for row in rows]
    expected = [_released_code_lr(epoch_end, config.lr, 1, total) for epoch_end in (batches, total)]
    assert logged == pytest.approx(expected, rel=1e-6)


def test_unknown_schedule_is_refused_naming_the_key() -> None:
    with pytest.raises(MedsegError, match=r"finetune\.lr_schedule"):
        dataclasses.replace(TrainConfig.from_params(tiny_params()), lr_schedule="cosine")
