"""Everything a run builds before its first epoch: the model on its device, the optimiser, the
datasets (cached embeddings, prompts) and the fresh or resumed state."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.models.factory import build_model
from medseg.models.strategies import Strategy
from medseg.train.config import TrainConfig, warmup_factor
from medseg.train.loop import Engine
from medseg.train.runtime import Runtime
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, load_state

TRAIN_STREAM, VAL_STREAM = 0, 1  # prompt random streams


def _augmenter(config: TrainConfig, cached: bool) -> Any:
    if not config.augment.enabled:
        return None
    if cached:
        warnings.warn("finetune.embedding_cache trains on augmentation-free embeddings: augmentations are off "
                      "for this decoder-only run", stacklevel=3)
        return None
    from medseg.train.augment import StudyAugmentation

    a = config.augment
    return StudyAugmentation(a.equalize_probability, a.brightness, a.contrast, config.seed)


def _speed_ups(model: torch.nn.Module, config: TrainConfig) -> None:
    from medseg.models.speedups import use_activation_checkpointing, use_fused_attention

    if config.fused_attention:
        use_fused_attention(model)
    if config.activation_checkpointing and not model.encoder_is_frozen():
        use_activation_checkpointing(model)


def build_engine(strategy: Strategy, image_size: int, config: TrainConfig, runtime: Runtime) -> Engine:
    """The model (weights, strategy, speed-ups) on the runtime's device, its optimiser and loss."""
    from monai.losses import DiceCELoss

    model = build_model(strategy.name, config.peft, image_size, config.num_classes, mode=config.mode,
                        checkpoint=config.checkpoint, encoder_checkpoint=config.encoder_checkpoint)
    _speed_ups(model, config)
    model.to(runtime.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if runtime.device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, config.warmup_iters))
    cached = config.embedding_cache and strategy.component == "dec"
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=1.0, lambda_ce=1.0)
    return Engine(model, runtime.wrap(model), optimizer, scheduler, loss_fn, runtime, cached,
                  _augmenter(config, cached))


def start_or_resume(work: Path, resume: bool, fingerprint: str, engine: Engine, config: TrainConfig,
                    generators: Generators) -> tuple[int, EarlyStopping, list[dict[str, float]]]:
    """Fresh start (rank 0 prepares the work directory), or the saved state on every process."""
    state = work / STATE_FILE
    resuming = resume and state.is_file()
    if resuming and (work / "fingerprint").read_text().strip() != fingerprint:
        raise MedsegError("saved training state belongs to other settings; rerun without --resume", state)
    engine.runtime.barrier()  # every process has decided before rank 0 touches the directory
    if not resuming and engine.runtime.is_main:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "fingerprint").write_text(fingerprint + "\n")
    engine.runtime.barrier()
    if not resuming:
        return 0, EarlyStopping(config.early_stopping_patience), []
    epoch, stopping = load_state(state, engine.model, engine.optimizer, engine.scheduler, generators)
    history = torch.load(work / "history.pt", weights_only=True)
    return epoch + 1, stopping, history


def _split(data_dir: Path, split: str, fewshot: bool) -> SliceDataset:
    dataset = SliceDataset(data_dir, split, fewshot=fewshot)
    if len(dataset) == 0:
        raise MedsegError(f"the {split} split has no {'few-shot ' if fewshot else ''}slices",
                          data_dir / "manifest.parquet")
    return dataset


def load_datasets(data_dir: Path, engine: Engine, config: TrainConfig, cache_root: Path) -> tuple[Any, Any]:
    """Train and validation sets; with the embedding cache, rank 0 fills it before the others read it."""
    splits = {name: _split(data_dir, name, config.fewshot) for name in ("train", "val")}
    bases: dict[str, Any] = dict(splits)
    if engine.embedded:
        from medseg.train.embedding_cache import CachedEmbeddingDataset, EmbeddingCache

        cache = EmbeddingCache(cache_root, engine.model)
        for turn in (True, False):  # rank 0 first, then every other process (all cache hits)
            if engine.runtime.is_main == turn:
                bases = {name: CachedEmbeddingDataset(split, cache, config.batch_size)
                         for name, split in splits.items()}
            engine.runtime.barrier()
    if config.mode == "automated":
        return bases["train"], bases["val"]
    from medseg.train.prompted import prompted_split

    return tuple(prompted_split(splits[name], bases[name], config.mode, config.prompts, config.seed, stream)
                 for name, stream in (("train", TRAIN_STREAM), ("val", VAL_STREAM)))
