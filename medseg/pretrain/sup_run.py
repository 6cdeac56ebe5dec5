"""``medseg pretrain_sup``: SupSAM, prompt-based supervised training of SAM on many datasets at once.

The image encoder and mask decoder train in full, the prompt encoder stays frozen (the study's SupSAM,
section 4.2). Training slices of every dataset in ``pretrain_sup.datasets`` (each with its own label map)
are prompted by a point or a box per item (``medseg.pretrain.supervised``); the mean Dice of the prompted
objects of their val slices picks the best epoch and stops the run after ``early_stopping_patience`` epochs
without a gain. Learning rate, warm-up, weight decay, prompt simulation and the runtime come from
``finetune`` (the study's recipe). Writes ``weights.pt``, the best epoch's SAM weights (SAM's key layout:
``medseg finetune --init supsam`` starts from them), ``train_summary.json`` and DVCLive curves.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
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
from medseg.pretrain.supervised import MixedPromptSegmenter, mixed_split
from medseg.train.config import TrainConfig, WarmupSchedule, checkpoint_for, set_total_steps
from medseg.train.finetune import live_curves, log_curves, peak_memory_mb
from medseg.train.loop import Engine, mean_dice, train_epoch
from medseg.train.runtime import Runtime
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, best_file, save_state, tidy

WEIGHTS_FORMAT = "medseg.sam-weights/1"


@dataclasses.dataclass(frozen=True)
class SupSettings:
    """``pretrain_sup`` with the training recipe it takes from ``finetune`` (``config``)."""

    backbone: str
    datasets: list[str]
    point_probability: float
    config: TrainConfig

    @classmethod
    def from_params(cls, params: dict[str, Any], backbone: str) -> SupSettings:
        section = params["pretrain_sup"]
        base = TrainConfig.from_params(params, mode="box", strategy=f"{backbone}_endec_vanilla")
        config = dataclasses.replace(
            base, max_epochs=int(section["max_epochs"]), batch_size=int(section["batch_size"]),
            early_stopping_patience=int(section["early_stopping_patience"]), num_classes=2, embedding_cache=False,
            init="supsam", checkpoint=checkpoint_for(params["finetune"].get("checkpoint"), f"{backbone}_dec_vanilla"))
        return cls(backbone, [check_name(d, "pretrain_sup.datasets") for d in section["datasets"]],
                   float(section["point_probability"]), config)


def pretrain_sup(settings: SupSettings, data_root: str | Path, out_dir: str | Path, work_root: str | Path,
                 resume: bool = False) -> dict[str, Any]:
    """Train, then write the best epoch's weights and the run's records to ``out_dir``; returns the summary."""
    folders = ingested_folders(data_root, settings.datasets, "pretrain_sup.datasets")
    config = settings.config
    return run_pretraining("pretrain_sup", settings.backbone, (config.device, config.precision),
                           (Path(out_dir), Path(work_root)), [*folders, config.checkpoint],
                           lambda runtime, work, tmp: _run(settings, folders, work, tmp, resume, runtime))


def _splits(folders: list[Path], config: TrainConfig, point_probability: float) -> tuple[Any, Any, int]:
    """The prompted train and val sets over every dataset, and the slice size they share."""
    sizes = {SliceDataset(folder, "train").images.shape[-1] for folder in folders}
    if len(sizes) != 1:
        raise MedsegError(f"the datasets were ingested at different sizes {sorted(sizes)}; ingest them at one "
                          "ingest.image_size", folders[0])
    train, val = ([SliceDataset(folder, split) for folder in folders] for split in ("train", "val"))
    return (mixed_split(train, config.prompts, point_probability, config.seed, 0),
            mixed_split(val, config.prompts, point_probability, config.seed, 1), sizes.pop())


def _engine(settings: SupSettings, image_size: int, train_size: int, runtime: Runtime) -> Engine:
    """SAM with mixed prompts (SAM's weights when given), the prompt encoder frozen, AdamW and the warm-up."""
    from monai.losses import DiceCELoss

    from medseg.models.checkpoints import load_sam_weights

    config = settings.config
    model = MixedPromptSegmenter(settings.backbone, image_size)
    if config.checkpoint:
        load_sam_weights(model, config.checkpoint)
    for parameter in model.prompt_encoder.parameters():
        parameter.requires_grad_(False)
    model.to(runtime.device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule(config.warmup_iters, config.lr_schedule))
    set_total_steps(scheduler, config.max_epochs * -(-train_size // config.batch_size))
    return Engine(model, runtime.wrap(model), optimizer, scheduler, DiceCELoss(to_onehot_y=True, softmax=True),
                  runtime, embedded=False)


def _run(settings: SupSettings, folders: list[Path], work: Path, out_dir: Path | None, resume: bool,
         runtime: Runtime) -> dict[str, Any]:
    from medseg.train.setup import start_or_resume

    started, config = time.perf_counter(), settings.config
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    train, val, image_size = _splits(folders, config, settings.point_probability)
    engine = _engine(settings, image_size, len(train), runtime)
    generators = Generators.seeded(config.seed)
    fingerprint = pretrain_fingerprint(settings, folders, config.checkpoint)
    start, stopping, history = start_or_resume(work, resume, fingerprint, engine, config, generators)
    with live_curves(work, runtime) as live:
        for entry in history:
            log_curves(live, entry)
        for epoch in range(start, config.max_epochs):
            if stopping.should_stop:
                break
            loss = train_epoch(engine, train, config.batch_size, epoch, generators.data, generators.augment)
            history.append({"train/loss": loss, "val/dice": mean_dice(engine, val, config.batch_size),
                            "lr": engine.scheduler.get_last_lr()[0]})
            log_curves(live, history[-1])
            _report(runtime, epoch, history[-1])
            _commit(engine, stopping, history, generators, (work, fingerprint, settings.config.checkpoint is None))
    summary = _summary(settings, (len(train), len(val)), history, stopping, engine, started)
    if out_dir is not None:
        shutil.copy2(work / best_file(stopping.best_epoch), out_dir / "weights.pt")
        shutil.copytree(work / "training", out_dir / "training")
        write_json(out_dir / "train_summary.json", provenance.with_brief(summary))
    runtime.barrier()
    return summary


def _report(runtime: Runtime, epoch: int, entry: dict[str, float]) -> None:
    if runtime.is_main:
        from tqdm import tqdm

        tqdm.write(f"epoch {epoch}: train loss {entry['train/loss']:.4f}, val Dice {entry['val/dice']:.4f}, "
                   f"lr {entry['lr']:.2e}")


def _commit(engine: Engine, stopping: EarlyStopping, history: list[dict[str, float]], generators: Generators,
            place: tuple[Path, dict[str, str], bool]) -> None:
    """An improved epoch's weights to their own file first, then the state (the epoch's one atomic commit);
    ``place``: the work folder, the resume fingerprint and whether the run began from random init."""
    work, fingerprint, random_init = place
    epoch = len(history) - 1
    improved = stopping.update(epoch, history[-1]["val/dice"])
    model = engine.model
    if engine.runtime.is_main:
        if improved:
            with atomic_file(work / best_file(epoch)) as tmp:
                torch.save({"format": WEIGHTS_FORMAT, "backbone": model.backbone, "image_size": model.image_size,
                            "metadata": {"init": "supsam", "epoch": epoch, "val_dice": history[-1]["val/dice"],
                                         "random_init": random_init},
                            "model": model.state_dict()}, tmp)
        save_state(work / STATE_FILE, epoch, model, engine.optimizer, engine.scheduler, stopping, generators,
                   history, fingerprint)
        tidy(work, best_file(stopping.best_epoch))
    engine.runtime.barrier()


def _summary(settings: SupSettings, sizes: tuple[int, int], history: list[dict[str, float]],
             stopping: EarlyStopping, engine: Engine, started: float) -> dict[str, Any]:
    model, runtime = engine.model, engine.runtime
    return {
        "step": "pretrain_sup", "init": "supsam", "backbone": settings.backbone, "datasets": settings.datasets,
        "image_size": model.image_size, "train_items": sizes[0], "val_items": sizes[1],
        "best_epoch": stopping.best_epoch, "best_val_dice": stopping.best_score, "epochs_run": len(history),
        "stopped_early": stopping.should_stop,
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "random_init": settings.config.checkpoint is None, "device": runtime.device.type,
        "processes": runtime.world_size, "precision": settings.config.precision,
        "wall_time_s": round(time.perf_counter() - started, 2), "peak_memory_mb": peak_memory_mb(runtime.device),
    }
