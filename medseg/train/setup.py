"""Everything a run builds before its first epoch: the model on its device, the optimiser, the
datasets (cached embeddings, prompts) and the fresh or resumed state."""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.baselines.networks import Baseline, BaselineSegmenter
from medseg.data.classes import ClassMap
from medseg.data.slice_dataset import SliceDataset, open_arrays, read_manifest
from medseg.errors import MedsegError
from medseg.models.backbones import normalisation_for
from medseg.models.factory import build_model
from medseg.models.strategies import Strategy
from medseg.train.batches import count
from medseg.train.config import TrainConfig, WarmupSchedule, set_total_steps
from medseg.train.fingerprint import changed_parts
from medseg.train.loop import Engine
from medseg.train.runtime import Runtime
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, read_state, restore_state, tidy

TRAIN_STREAM, VAL_STREAM = 0, 1  # prompt random streams


def _intensity(config: TrainConfig) -> Any:
    from medseg.train.augment import StudyAugmentation

    a = config.augment
    return StudyAugmentation(a.equalize_probability, a.brightness, a.contrast, config.seed)


def _augmenter(config: TrainConfig, cached: bool) -> Any:
    """The batch augmentation of the ``paper`` preset (``released_code`` augments slices: ``_augmented``)."""
    if not config.augment.enabled:
        return None
    if cached:
        warnings.warn("finetune.embedding_cache trains on augmentation-free embeddings: augmentations are off "
                      "for this decoder-only run", stacklevel=3)
        return None
    return _intensity(config) if config.augment.preset == "paper" else None


def _augmented(train: SliceDataset, base: Any, config: TrainConfig, embedded: bool) -> Any:
    """``base`` (the train slices' items) with the ``released_code`` preset's per-slice augmentation, when on."""
    a = config.augment
    if not a.enabled or a.preset != "released_code" or embedded:
        return base
    from medseg.train.augment import ReleasedCodeAugmentation

    return ReleasedCodeAugmentation(base, _intensity(config), int(train.images.shape[-1]), a.crop_scale,
                                    a.max_rotation_deg, config.seed)


def _speed_ups(model: torch.nn.Module, config: TrainConfig) -> None:
    from medseg.models.speedups import use_activation_checkpointing, use_fused_attention

    if config.fused_attention:
        use_fused_attention(model)
    if config.activation_checkpointing and not model.encoder_is_frozen():
        use_activation_checkpointing(model)


def build_engine(strategy: Strategy | Baseline, image_size: int, config: TrainConfig, runtime: Runtime) -> Engine:
    """The model (weights, strategy, speed-ups; or a baseline network) on the runtime's device, its
    optimiser and loss."""
    from monai.losses import DiceCELoss

    if isinstance(strategy, Baseline):
        model = BaselineSegmenter(strategy, image_size, config.num_classes)
    else:
        model = build_model(strategy.name, config.peft, image_size, config.num_classes, mode=config.mode,
                            checkpoint=config.checkpoint, encoder_checkpoint=config.encoder_checkpoint,
                            normalisation=normalisation_for(config.init))
        _speed_ups(model, config)
    model.to(runtime.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if runtime.device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupSchedule(config.warmup_iters, config.lr_schedule))
    cached = config.embedding_cache and strategy.component == "dec"
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=1.0, lambda_ce=1.0)
    return Engine(model, runtime.wrap(model), optimizer, scheduler, loss_fn, runtime, cached,
                  _augmenter(config, cached))


def start_or_resume(work: Path, resume: bool, fingerprint: dict[str, str], engine: Engine, config: TrainConfig,
                    generators: Generators) -> tuple[int, EarlyStopping, list[dict[str, float]]]:
    """Fresh start (rank 0 empties the work directory), or the committed state on every process once
    it is checked against ``fingerprint`` (rank 0 removes what an interrupted epoch left)."""
    state = work / STATE_FILE
    payload = _resumable(state, fingerprint) if resume and state.is_file() else None
    engine.runtime.barrier()  # every process has decided before rank 0 touches the directory
    if engine.runtime.is_main:
        if payload is None:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        else:
            tidy(work, payload["best"])
    engine.runtime.barrier()
    if payload is None:
        return 0, EarlyStopping(config.early_stopping_patience), []
    epoch, stopping, history = restore_state(state, payload, engine.model, engine.optimizer, engine.scheduler,
                                             generators)
    return epoch + 1, stopping, history


def _resumable(state: Path, fingerprint: dict[str, str]) -> dict[str, Any]:
    """The committed state, refused when it belongs to other settings, data or weights."""
    payload = read_state(state)
    changed = changed_parts(payload["fingerprint"], fingerprint)
    if changed:
        raise MedsegError(f"cannot resume: {' and '.join(changed)} changed since this training state was saved; "
                          "rerun without --resume", state)
    if not (state.parent / payload["best"]).is_file():
        raise MedsegError("the best-epoch checkpoint that the training state names is missing; rerun without "
                          "--resume", state.parent / payload["best"])
    return payload


def _split(data_dir: Path, split: str, fewshot: bool, lookup: np.ndarray | None) -> SliceDataset:
    dataset = SliceDataset(data_dir, split, fewshot=fewshot, label_lookup=lookup)
    if len(dataset) == 0:
        raise MedsegError(f"the {split} split has no {'few-shot ' if fewshot else ''}slices",
                          data_dir / "manifest.parquet")
    return dataset


def _labels(data_dir: Path, splits: dict[str, SliceDataset]) -> list[int]:
    """Labels in the masks of the splits' slices: the manifest's ``labels_present``, or the masks."""
    rows = np.concatenate([split.rows for split in splits.values()])
    manifest = read_manifest(data_dir)
    if "labels_present" in manifest.columns:
        texts = manifest.loc[manifest["row"].isin(rows), "labels_present"]
        with contextlib.suppress(ValueError, TypeError):
            return sorted({int(value) for text in texts for value in str(text).split(",") if value.strip()})
    masks = open_arrays(data_dir)[1]  # as stored, not through the model's classes
    return sorted({int(value) for row in rows for value in np.unique(masks[int(row)])})


def open_splits(data_dir: Path, config: TrainConfig, classes: ClassMap,
                label_map: dict[int, str]) -> dict[str, SliceDataset]:
    """The train and validation slices, read through the model's classes, checked to be non-empty and to
    hold only labels of the dataset's label map (and, with an explicit ``num_classes``, below it): a
    mismatch fails here, not mid-training."""
    lookup = classes.lookup()
    splits = {name: _split(data_dir, name, config.fewshot, lookup) for name in ("train", "val")}
    labels = _labels(data_dir, splits)
    unknown = [label for label in labels if label not in label_map]
    if unknown:
        raise MedsegError(f"the train/val masks hold labels {labels} but the dataset's label map (ingest.json) "
                          f"has {sorted(label_map)}; re-run `medseg ingest`", data_dir)
    if config.mode == "automated" and lookup is None and labels and labels[-1] >= config.num_classes:
        raise MedsegError(f"the train/val masks hold labels {labels} but the model has {config.num_classes} "
                          f"classes (num_classes, labels 0..{config.num_classes - 1})", data_dir)
    return splits


def load_datasets(splits: dict[str, SliceDataset], engine: Engine, config: TrainConfig,
                  cache_root: Path) -> tuple[Any, Any]:
    """Train and validation sets (the train set augmented per slice by the ``released_code`` preset); with
    the embedding cache, rank 0 fills it before the others read it. The learning-rate schedule learns
    the run's total optimiser steps (max_epochs x batches per epoch) here."""
    train, val = _datasets(splits, engine, config, cache_root)
    set_total_steps(engine.scheduler, config.max_epochs * count(train, config.batch_size))
    return train, val


def _datasets(splits: dict[str, SliceDataset], engine: Engine, config: TrainConfig,
              cache_root: Path) -> tuple[Any, Any]:
    bases: dict[str, Any] = dict(splits)
    if engine.embedded:
        from medseg.train.embedding_cache import CachedEmbeddingDataset, EmbeddingCache

        cache = EmbeddingCache(cache_root, engine.model)
        for turn in (True, False):  # rank 0 first, then every other process (all cache hits)
            if engine.runtime.is_main == turn:
                bases = {name: CachedEmbeddingDataset(split, cache, config.batch_size)
                         for name, split in splits.items()}
            engine.runtime.barrier()
    bases["train"] = _augmented(splits["train"], bases["train"], config, engine.embedded)
    if config.mode == "automated":
        return bases["train"], bases["val"]
    from medseg.train.prompted import prompted_split

    return tuple(prompted_split(splits[name], bases[name], config.mode, config.prompts, config.seed, stream)
                 for name, stream in (("train", TRAIN_STREAM), ("val", VAL_STREAM)))
