"""``medseg finetune``: train one SAM strategy on one ingested dataset (automated mode).

The loss is Dice + cross-entropy with equal weights (MONAI ``DiceCELoss``), the optimiser AdamW with
a linear warm-up, and the best epoch by validation Dice is exported as a self-contained checkpoint.
Training curves are logged with DVCLive (``<out>/training``) for ``dvc plots``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.atomic import atomic_dir, write_json
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.eval.metrics import dice_per_class
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import build_model, model_spec
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import PeftConfig, count_parameters, parse_strategy


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (params.yaml ``finetune`` section)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_iters: int
    num_classes: int
    checkpoint: str | None
    encoder_checkpoint: str | None
    num_threads: int
    seed: int
    peft: PeftConfig

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        finetune = params["finetune"]
        return cls(
            epochs=int(finetune["epochs"]), batch_size=int(finetune["batch_size"]),
            lr=float(finetune["lr"]), weight_decay=float(finetune["weight_decay"]),
            warmup_iters=int(finetune["warmup_iters"]), num_classes=int(finetune["num_classes"]),
            checkpoint=finetune.get("checkpoint") or None,
            encoder_checkpoint=finetune.get("encoder_checkpoint") or None,
            num_threads=int(finetune.get("num_threads", 0)), seed=int(params["seed"]),
            peft=PeftConfig.from_params(params["models"]),
        )


def warmup_factor(step: int, warmup_iters: int) -> float:
    """Linear warm-up from 1/warmup_iters to 1 over ``warmup_iters`` optimiser steps, then 1."""
    return 1.0 if warmup_iters <= 0 else min(1.0, (step + 1) / warmup_iters)


def _loaders(data_dir: Path, batch_size: int, seed: int) -> tuple[Any, Any]:
    from torch.utils.data import DataLoader

    train, val = SliceDataset(data_dir, "train"), SliceDataset(data_dir, "val")
    for name, dataset in (("train", train), ("val", val)):
        if len(dataset) == 0:
            raise MedsegError(f"the {name} split has no slices", data_dir / "manifest.parquet")
    generator = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator),
        DataLoader(val, batch_size=batch_size, shuffle=False),
    )


@torch.no_grad()
def mean_dice(model: SamSegmenter, loader: Any) -> float:
    """Mean foreground Dice over slices and classes (empty-vs-empty excluded)."""
    model.eval()
    scores = []
    for images, masks in loader:
        predicted = model(images).argmax(dim=1)
        scores.append(dice_per_class(predicted, masks, model.num_classes))
    values = torch.cat(scores).flatten()
    values = values[~torch.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def _train_epoch(model: SamSegmenter, loader: Any, loss_fn: Any, optimizer: Any, scheduler: Any,
                 epoch: int) -> float:
    from tqdm import tqdm

    model.train()
    losses = []
    for images, masks in tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), masks.unsqueeze(1))
        if not torch.isfinite(loss):
            raise MedsegError(f"training diverged: loss is {loss.item()} at epoch {epoch}")
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def finetune(dataset: str, strategy_id: str, data_dir: str | Path, out_dir: str | Path,
             config: TrainConfig) -> dict[str, Any]:
    """Train, log curves, export the best checkpoint to ``<out>/model.pt``; returns the summary."""
    from dvclive import Live
    from monai.losses import DiceCELoss
    from tqdm import tqdm

    strategy = parse_strategy(strategy_id)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    torch.manual_seed(config.seed)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    train_loader, val_loader = _loaders(data_dir, config.batch_size, config.seed)
    image_size = int(train_loader.dataset.images.shape[-1])
    model = build_model(strategy.name, config.peft, image_size, config.num_classes,
                        checkpoint=config.checkpoint, encoder_checkpoint=config.encoder_checkpoint)
    total, trainable = count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_factor(step, config.warmup_iters))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=1.0, lambda_ce=1.0)
    best = {"epoch": -1, "val_dice": -math.inf}
    started = time.perf_counter()
    with atomic_dir(out_dir) as tmp, Live(dir=str(tmp / "training"), save_dvc_exp=False,
                                          dvcyaml=None, report=None) as live:
        for epoch in range(config.epochs):
            train_loss = _train_epoch(model, train_loader, loss_fn, optimizer, scheduler, epoch)
            val_dice = mean_dice(model, val_loader)
            live.log_metric("train/loss", train_loss)
            live.log_metric("val/dice", val_dice)
            live.log_metric("lr", scheduler.get_last_lr()[0])
            live.next_step()
            tqdm.write(f"epoch {epoch}: train loss {train_loss:.4f}, val Dice {val_dice:.4f}, "
                       f"lr {scheduler.get_last_lr()[0]:.2e}")
            if val_dice > best["val_dice"] or best["epoch"] < 0:
                best = {"epoch": epoch, "val_dice": val_dice}
                export_checkpoint(model, tmp / "model.pt", model_spec(strategy.name, config.peft), {
                    "dataset": dataset, "strategy": strategy.name, "mode": "automated",
                    "epoch": epoch, "val_dice": val_dice, "labels_from": str(data_dir),
                })
        summary = _summary(dataset, strategy.name, best, config, (total, trainable), started)
        write_json(tmp / "train_summary.json", summary)
    return summary


def _summary(dataset: str, strategy: str, best: dict[str, Any], config: TrainConfig,
             counts: tuple[int, int], started: float) -> dict[str, Any]:
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "dataset": dataset, "strategy": strategy, "best_epoch": best["epoch"],
        "best_val_dice": best["val_dice"], "epochs_run": config.epochs,
        "params_total": counts[0], "params_trainable": counts[1],
        "wall_time_s": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak_kib / 1024),
        "random_init": config.checkpoint is None,
    }
