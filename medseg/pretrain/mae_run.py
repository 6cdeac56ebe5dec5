"""``medseg pretrain_mae``: SSLSAM, masked-image-modelling pretraining of a SAM image encoder.

Learns from the train-split slices of the datasets in ``pretrain_mae.datasets`` (their val-split slices,
with masks fixed once, give the validation curve), starting from the backbone's SAM weights
(``finetune.checkpoint``), with the MAE recipe in ``pretrain_mae`` (``medseg.pretrain.mae`` explains the
masking). Every epoch commits a resumable state (``--resume`` continues exactly after a kill); the run
writes ``encoder.pt`` (the encoder only: ``finetune --init sslsam`` loads it over SAM's weights),
``train_summary.json``, DVCLive curves under ``training/`` and ``reconstructions.png``.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg import provenance
from medseg.atomic import atomic_file, write_json
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.names import check_name
from medseg.pretrain.common import fingerprint as pretrain_fingerprint
from medseg.pretrain.common import ingested_folders, run_pretraining
from medseg.pretrain.mae import PATCH_SIZE, MaskedAutoencoder, random_masks
from medseg.train.finetune import live_curves, log_curves
from medseg.train.runtime import Runtime
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, read_state, restore_state, save_state

ENCODER_FORMAT = "medseg.encoder/1"
LOGGED = ("train/loss", "val/loss", "lr")
VAL_MASK_SEED = 7  # validation masks are drawn once from this seed: every epoch scores the same task


@dataclass(frozen=True)
class MaeSettings:
    """``pretrain_mae`` with the runtime settings it shares with ``finetune``."""

    backbone: str
    datasets: list[str]
    image_size: int
    mask_ratio: float
    epochs: int
    batch_size: int
    accumulation: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: int
    crop_scale: tuple[float, float]
    decoder: dict[str, int]
    checkpoint: str | None
    seed: int
    device: str = "auto"
    precision: str = "fp32"
    fused_attention: bool = True
    activation_checkpointing: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any], backbone: str) -> MaeSettings:
        from medseg.train.config import checkpoint_for

        section, finetune = params["pretrain_mae"], params["finetune"]
        weights = section.get("checkpoint") or checkpoint_for(finetune.get("checkpoint"), f"{backbone}_dec_vanilla")
        return cls(
            backbone=backbone, datasets=[check_name(d, "pretrain_mae.datasets") for d in section["datasets"]],
            image_size=int(section["image_size"]), mask_ratio=float(section["mask_ratio"]),
            epochs=int(section["epochs"]), batch_size=int(section["batch_size"]),
            accumulation=int(section["accumulation"]), lr=float(section["lr"]),
            weight_decay=float(section["weight_decay"]), betas=tuple(section["betas"]),
            warmup_epochs=int(section["warmup_epochs"]), crop_scale=tuple(section["crop_scale"]),
            decoder={k: int(v) for k, v in section["decoder"].items()}, checkpoint=weights or None,
            seed=int(params["seed"]), device=str(finetune.get("device", "auto")),
            precision=str(finetune.get("precision", "fp32")), fused_attention=bool(finetune.get("fused_attention")),
            activation_checkpointing=bool(finetune.get("activation_checkpointing")))


@dataclass
class CosineWarmup:
    """``LambdaLR`` factor of optimiser step ``step``: linear warm-up, then half a cosine to zero (MAE's
    schedule). A callable object, so the scheduler's state (saved each epoch) holds its fields."""

    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def pretrain_mae(settings: MaeSettings, data_root: str | Path, out_dir: str | Path, work_root: str | Path,
                 resume: bool = False) -> dict[str, Any]:
    """Pretrain, then write the encoder and the run's records to ``out_dir``; returns the summary."""
    folders = ingested_folders(data_root, settings.datasets, "pretrain_mae.datasets")
    return run_pretraining("pretrain_mae", settings.backbone, (settings.device, settings.precision),
                           (Path(out_dir), Path(work_root)), [*folders, settings.checkpoint],
                           lambda runtime, work, tmp: _run(settings, folders, work, tmp, resume, runtime))


def _run(settings: MaeSettings, folders: list[Path], work: Path, out_dir: Path | None, resume: bool,
         runtime: Runtime) -> dict[str, Any]:
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    train, val = (_slices(folders, split) for split in ("train", "val"))
    model, optimizer, scheduler = _build(settings, len(train), runtime)
    generators = Generators.seeded(settings.seed)
    fingerprint = pretrain_fingerprint(settings, folders, settings.checkpoint)
    start, stopping, history = _start_or_resume(work, resume, fingerprint, (model, optimizer, scheduler),
                                                generators, runtime)
    trainer = runtime.wrap(model)
    val_masks = random_masks(len(val), settings.image_size // PATCH_SIZE, settings.mask_ratio,
                             torch.Generator().manual_seed(VAL_MASK_SEED))
    with live_curves(work, runtime) as live:
        for entry in history:
            log_curves(live, entry, LOGGED)
        for epoch in range(start, settings.epochs):
            loss = _train_epoch(trainer, model, (optimizer, scheduler), train, settings, epoch, generators, runtime)
            entry = {"train/loss": loss, "val/loss": _val_loss(model, val, val_masks, settings, runtime),
                     "lr": scheduler.get_last_lr()[0]}
            history.append(entry)
            log_curves(live, entry, LOGGED)
            _report(runtime, epoch, entry)
            stopping.update(epoch, -entry["val/loss"])
            if runtime.is_main:
                save_state(work / STATE_FILE, epoch, model, optimizer, scheduler, stopping, generators, history,
                           fingerprint)
            runtime.barrier()
    summary = _summary(settings, (len(train), len(val)), history, stopping, model, runtime, started)
    if out_dir is not None:
        _publish(model, settings, work, out_dir, summary, (val, val_masks))
    runtime.barrier()
    return summary


def _slices(folders: list[Path], split: str) -> torch.utils.data.Dataset:
    """The ``split`` slices of every dataset, one dataset (images only are used)."""
    from torch.utils.data import ConcatDataset

    parts = [SliceDataset(folder, split) for folder in folders]
    if not sum(len(part) for part in parts):
        raise MedsegError(f"the datasets hold no {split} slices", folders[0] / "manifest.parquet")
    return ConcatDataset(parts)


def _build(settings: MaeSettings, train_size: int, runtime: Runtime) -> tuple[MaskedAutoencoder, Any, Any]:
    """The model (SAM's weights in its encoder when given), AdamW and the warm-up + cosine schedule."""
    from medseg.models.speedups import use_activation_checkpointing, use_fused_attention

    model = MaskedAutoencoder(settings.backbone, settings.image_size, settings.decoder)
    if settings.checkpoint:
        from medseg.models.checkpoints import load_encoder_weights

        load_encoder_weights(model, settings.checkpoint)
    if settings.fused_attention:
        use_fused_attention(model)
    if settings.activation_checkpointing:
        use_activation_checkpointing(model)
    model.to(runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=settings.betas,
                                  weight_decay=settings.weight_decay)
    steps_per_epoch = -(-math.ceil(train_size / settings.batch_size) // settings.accumulation)
    schedule = CosineWarmup(max(1, settings.warmup_epochs * steps_per_epoch), settings.epochs * steps_per_epoch)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _start_or_resume(work: Path, resume: bool, fingerprint: dict[str, str], objects: tuple[Any, Any, Any],
                     generators: Generators, runtime: Runtime) -> tuple[int, EarlyStopping, list[dict[str, float]]]:
    """Fresh start (the work directory emptied), or the committed state when it matches ``fingerprint``."""
    from medseg.train.fingerprint import changed_parts

    state = work / STATE_FILE
    payload = read_state(state, LOGGED) if resume and state.is_file() else None
    if payload is not None and (changed := changed_parts(payload["fingerprint"], fingerprint)):
        raise MedsegError(f"cannot resume: {' and '.join(changed)} changed since the interrupted run; run "
                          "without --resume to start afresh", state)
    runtime.barrier()
    if runtime.is_main and payload is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    runtime.barrier()
    if payload is None:
        return 0, EarlyStopping(0), []
    epoch, stopping, history = restore_state(state, payload, *objects, generators)
    return epoch + 1, stopping, history


def _augment(images: torch.Tensor, settings: MaeSettings) -> torch.Tensor:
    """MAE's augmentation of each slice: a random resized crop to the pretraining size, a horizontal flip."""
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomResizedCrop(settings.image_size, scale=settings.crop_scale, antialias=True),
                            v2.RandomHorizontalFlip()])
    return torch.stack([transform(image) for image in images])


def _train_epoch(trainer: torch.nn.Module, model: MaskedAutoencoder, optimisation: tuple[Any, Any], dataset: Any,
                 settings: MaeSettings, epoch: int, generators: Generators, runtime: Runtime) -> float:
    """Mean loss of one pass over the training slices; an optimiser step every ``accumulation`` batches."""
    from tqdm import tqdm

    from medseg.train.batches import count, iterate

    optimizer, scheduler = optimisation
    model.train()
    batches, side = count(dataset, settings.batch_size), settings.image_size // PATCH_SIZE
    total = 0.0
    optimizer.zero_grad(set_to_none=True)
    for index, (batch, scale) in enumerate(tqdm(
            iterate(dataset, settings.batch_size, generators.data, runtime.rank, runtime.world_size), total=batches,
            desc=f"epoch {epoch}", unit="batch", leave=False, disable=not runtime.is_main)):
        images = _augment(batch[0], settings).to(runtime.device)
        masks = random_masks(len(images), side, settings.mask_ratio, generators.augment).to(runtime.device)
        with runtime.autocast():
            loss, _ = trainer(images, masks)
        if not torch.isfinite(loss):
            raise MedsegError(f"pretraining diverged: loss is {loss.item()} at epoch {epoch}")
        (loss * scale / settings.accumulation).backward()
        if (index + 1) % settings.accumulation == 0 or index + 1 == batches:
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        total += loss.item() * scale / runtime.world_size
    return float(runtime.sum_over_processes(torch.tensor([total], dtype=torch.float64))[0]) / max(batches, 1)


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """Slices at the pretraining size (unchanged when they already are)."""
    from torch.nn import functional as F

    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@torch.no_grad()
def _val_loss(model: MaskedAutoencoder, dataset: Any, masks: torch.Tensor, settings: MaeSettings,
              runtime: Runtime) -> float:
    """Mean reconstruction loss of the validation slices under their fixed masks (shared across processes)."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    indices = list(range(len(dataset)))[runtime.rank::runtime.world_size]
    for start in range(0, len(indices), settings.batch_size):
        chosen = indices[start:start + settings.batch_size]
        images = resized(torch.stack([dataset[i][0] for i in chosen]), settings.image_size).to(runtime.device)
        with runtime.autocast():
            loss, _ = model(images, masks[chosen].to(runtime.device))
        total += torch.tensor([loss.item() * len(chosen), len(chosen)], dtype=torch.float64)
    total = runtime.sum_over_processes(total)
    return float(total[0] / max(total[1].item(), 1.0))


def _report(runtime: Runtime, epoch: int, entry: dict[str, float]) -> None:
    if runtime.is_main:
        from tqdm import tqdm

        tqdm.write(f"epoch {epoch}: train loss {entry['train/loss']:.4f}, val loss {entry['val/loss']:.4f}, "
                   f"lr {entry['lr']:.2e}")


def _summary(settings: MaeSettings, sizes: tuple[int, int], history: list[dict[str, float]],
             stopping: EarlyStopping, model: MaskedAutoencoder, runtime: Runtime, started: float) -> dict[str, Any]:
    from medseg.train.finetune import peak_memory_mb

    return {
        "step": "pretrain_mae", "init": "sslsam", "backbone": settings.backbone, "datasets": settings.datasets,
        "image_size": settings.image_size, "train_slices": sizes[0], "val_slices": sizes[1],
        "epochs_run": len(history), "exported_epoch": len(history) - 1,
        "final_train_loss": history[-1]["train/loss"] if history else None,
        "final_val_loss": history[-1]["val/loss"] if history else None,
        "best_val_loss": -stopping.best_score if history else None, "best_val_epoch": stopping.best_epoch,
        "params_encoder": sum(p.numel() for p in model.image_encoder.parameters()),
        "random_init": settings.checkpoint is None, "device": runtime.device.type, "processes": runtime.world_size,
        "precision": settings.precision, "wall_time_s": round(time.perf_counter() - started, 2),
        "peak_memory_mb": peak_memory_mb(runtime.device),
    }


def _publish(model: MaskedAutoencoder, settings: MaeSettings, work: Path, out_dir: Path, summary: dict[str, Any],
             validation: tuple[Any, torch.Tensor]) -> None:
    """The encoder (the last epoch's, as MAE exports), the curves, the reconstructions and the summary."""
    from medseg.pretrain.figures import draw_reconstructions

    metadata = {key: summary[key] for key in ("init", "backbone", "datasets", "image_size", "epochs_run",
                                              "random_init", "final_val_loss")}
    with atomic_file(out_dir / "encoder.pt") as tmp:
        torch.save({"format": ENCODER_FORMAT, "backbone": settings.backbone, "image_size": settings.image_size,
                    "metadata": metadata, "state_dict": model.encoder_state()}, tmp)
    shutil.copytree(work / "training", out_dir / "training")
    dataset, masks = validation
    count = min(4, len(dataset))
    images = resized(torch.stack([dataset[i][0] for i in range(count)]), settings.image_size)
    draw_reconstructions(out_dir / "reconstructions.png", model.cpu().eval(), images, masks[:count],
                         f"{settings.backbone} after {summary['epochs_run']} epochs"
                         + (" (no SAM weights: random init)" if summary["random_init"] else ""))
    write_json(out_dir / "train_summary.json", provenance.with_brief(summary))
