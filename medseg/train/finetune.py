"""``medseg finetune``: train one SAM strategy on one ingested dataset (automated mode).

The study's recipe (section 4.1.1): Dice + cross-entropy with equal weights (MONAI ``DiceCELoss``),
AdamW with linear warm-up, histogram equalisation + colour jitter, early stopping on validation
Dice, the best epoch exported as a self-contained checkpoint. The few-shot profile trains on the
manifest's 5 + 5 few-shot slices. Decoder-only strategies can train on cached image embeddings
(``finetune.embedding_cache``): the cache is augmentation-free, so augmentations are off then.

The run lives in a work directory (``finetune.work_dir``/<dataset>/<strategy>) holding the state
saved every epoch; ``resume=True`` continues an interrupted run exactly. Only a finished run
writes ``out_dir`` (model.pt, train_summary.json, training/ DVCLive logs), atomically.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from medseg.atomic import atomic_dir, write_json
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import build_model, model_spec
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import Strategy, count_parameters, parse_strategy
from medseg.train.config import TrainConfig, warmup_factor
from medseg.train.loop import mean_dice, train_epoch
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, load_state, save_state


def _datasets(data_dir: Path, model: SamSegmenter, config: TrainConfig, cached: bool,
              cache_root: Path) -> tuple[Any, Any]:
    train = SliceDataset(data_dir, "train", fewshot=config.fewshot)
    val = SliceDataset(data_dir, "val", fewshot=config.fewshot)
    for name, dataset in (("train", train), ("val", val)):
        if len(dataset) == 0:
            raise MedsegError(f"the {name} split has no {'few-shot ' if config.fewshot else ''}slices",
                              data_dir / "manifest.parquet")
    if not cached:
        return train, val
    from medseg.train.embedding_cache import CachedEmbeddingDataset, EmbeddingCache

    cache = EmbeddingCache(cache_root, model)
    return (CachedEmbeddingDataset(train, cache, config.batch_size),
            CachedEmbeddingDataset(val, cache, config.batch_size))


def _augmenter(config: TrainConfig, cached: bool) -> Any:
    if not config.augment.enabled:
        return None
    if cached:
        warnings.warn("finetune.embedding_cache trains on augmentation-free embeddings: augmentations are off "
                      "for this decoder-only run", stacklevel=2)
        return None
    from medseg.train.augment import StudyAugmentation

    a = config.augment
    return StudyAugmentation(a.equalize_probability, a.brightness, a.contrast, config.seed)


def _setup(strategy: Strategy, image_size: int, config: TrainConfig) -> tuple[SamSegmenter, Any, Any]:
    model = build_model(strategy.name, config.peft, image_size, config.num_classes,
                        checkpoint=config.checkpoint, encoder_checkpoint=config.encoder_checkpoint)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_factor(step, config.warmup_iters))
    return model, optimizer, scheduler


def _start(work: Path, resume: bool, fingerprint: str, objects: tuple[Any, Any, Any],
           config: TrainConfig, generators: Generators) -> tuple[int, EarlyStopping, list[dict[str, float]]]:
    """Fresh start, or the saved state when resuming the same run."""
    state = work / STATE_FILE
    if resume and state.is_file():
        if (work / "fingerprint").read_text().strip() != fingerprint:
            raise MedsegError("saved training state belongs to other settings; rerun without --resume", state)
        epoch, stopping = load_state(state, *objects, generators)
        history = torch.load(work / "history.pt", weights_only=True)
        return epoch + 1, stopping, history
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "fingerprint").write_text(fingerprint + "\n")
    return 0, EarlyStopping(config.early_stopping_patience), []


def _log(live: Any, entry: dict[str, float]) -> None:
    for name in ("train/loss", "val/dice", "lr"):
        live.log_metric(name, entry[name])
    live.next_step()


def finetune(dataset: str, strategy_id: str, data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
             work_root: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume), export the best epoch to ``<out>/model.pt``; returns the summary."""
    from dvclive import Live
    from monai.losses import DiceCELoss
    from tqdm import tqdm

    strategy = parse_strategy(strategy_id)
    data_dir, out_dir, work = Path(data_dir), Path(out_dir), Path(work_root) / dataset / strategy.name
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    image_size = int(SliceDataset(data_dir, "train").images.shape[-1])
    model, optimizer, scheduler = _setup(strategy, image_size, config)
    cached = config.embedding_cache and strategy.component == "dec"
    generators = Generators.seeded(config.seed)
    start, stopping, history = _start(work, resume, config.fingerprint(dataset, strategy.name),
                                      (model, optimizer, scheduler), config, generators)
    train_set, val_set = _datasets(data_dir, model, config, cached, Path(work_root) / "embedding-cache")
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                                               generator=generators.data)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=config.batch_size)
    augment, started = _augmenter(config, cached), time.perf_counter()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=1.0, lambda_ce=1.0)
    with Live(dir=str(work / "training"), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for entry in history:  # a resumed run replays its curves, then goes on
            _log(live, entry)
        for epoch in range(start, config.max_epochs):
            if stopping.should_stop:
                break
            loss = train_epoch(model, train_loader, loss_fn, optimizer, scheduler, epoch, cached, augment,
                               generators.augment)
            dice = mean_dice(model, val_loader, cached)
            history.append({"train/loss": loss, "val/dice": dice, "lr": scheduler.get_last_lr()[0]})
            _log(live, history[-1])
            tqdm.write(f"epoch {epoch}: train loss {loss:.4f}, val Dice {dice:.4f}, lr {history[-1]['lr']:.2e}")
            if stopping.update(epoch, dice):
                export_checkpoint(model, work / "best.pt", model_spec(strategy.name, config.peft), {
                    "dataset": dataset, "strategy": strategy.name, "mode": "automated", "epoch": epoch,
                    "val_dice": dice, "fewshot": config.fewshot})
            torch.save(history, work / "history.pt")
            save_state(work / STATE_FILE, epoch, model, optimizer, scheduler, stopping, generators)
    summary = _summary(dataset, strategy.name, stopping, len(history), count_parameters(model), started, cached)
    summary["random_init"] = config.checkpoint is None
    _publish(work, out_dir, summary)
    return summary


def _publish(work: Path, out_dir: Path, summary: dict[str, Any]) -> None:
    """Move the finished run's outputs into ``out_dir`` atomically and drop the work directory."""
    with atomic_dir(out_dir) as tmp:
        shutil.copy2(work / "best.pt", tmp / "model.pt")
        shutil.copytree(work / "training", tmp / "training")
        write_json(tmp / "train_summary.json", summary)
    shutil.rmtree(work, ignore_errors=True)


def _summary(dataset: str, strategy: str, stopping: EarlyStopping, epochs_run: int, counts: tuple[int, int],
             started: float, cached: bool) -> dict[str, Any]:
    import resource

    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "dataset": dataset, "strategy": strategy, "best_epoch": stopping.best_epoch,
        "best_val_dice": stopping.best_score, "epochs_run": epochs_run, "stopped_early": stopping.should_stop,
        "params_total": counts[0], "params_trainable": counts[1], "embedding_cache": cached,
        "wall_time_s": round(time.perf_counter() - started, 2), "peak_rss_mb": round(peak_kib / 1024),
    }
