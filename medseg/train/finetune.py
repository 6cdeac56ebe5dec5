"""``medseg finetune``: train one SAM strategy on one ingested dataset, in automated, point or box mode.

The study's recipe (section 4.1.1): Dice + cross-entropy with equal weights (MONAI ``DiceCELoss``),
AdamW with linear warm-up, histogram equalisation + colour jitter, early stopping on validation
Dice, the best epoch exported as a self-contained checkpoint. The few-shot profile trains on the
manifest's 5 + 5 few-shot slices. Point and box modes train on simulated prompts with the prompt
encoder frozen (``medseg.train.prompted``). Decoder-only strategies can train on cached image
embeddings (``finetune.embedding_cache``): the cache is augmentation-free, so augmentations are off then.

The run lives in a work directory (``finetune.work_dir``/<dataset>/<mode>/<strategy>) holding the
state saved every epoch; ``resume=True`` continues an interrupted run exactly. Only a finished run
writes ``out_dir`` (model.pt, train_summary.json, training/ DVCLive logs), atomically. Under
``torchrun`` every process trains its share of each global batch; rank 0 alone logs and writes.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from medseg.atomic import atomic_dir, write_json
from medseg.data.slice_dataset import SliceDataset
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import model_spec
from medseg.models.strategies import count_parameters, parse_strategy
from medseg.train.config import TrainConfig
from medseg.train.loop import Engine, mean_dice, train_epoch
from medseg.train.runtime import Runtime, start_runtime
from medseg.train.setup import build_engine, load_datasets, start_or_resume
from medseg.train.state import STATE_FILE, EarlyStopping, Generators, save_state

LOGGED = ("train/loss", "val/dice", "lr")


def work_dir(work_root: str | Path, dataset: str, mode: str, strategy: str) -> Path:
    """Where a run keeps its resumable state."""
    return Path(work_root) / dataset / mode / strategy


def finetune(dataset: str, strategy_id: str, data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
             work_root: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume), export the best epoch to ``<out>/model.pt``; returns the summary."""
    with start_runtime(config.device, config.precision) as runtime:
        return _run(dataset, strategy_id, Path(data_dir), Path(out_dir), config, Path(work_root), resume, runtime)


def _run(dataset: str, strategy_id: str, data_dir: Path, out_dir: Path, config: TrainConfig, work_root: Path,
         resume: bool, runtime: Runtime) -> dict[str, Any]:
    strategy = parse_strategy(strategy_id)
    work = work_dir(work_root, dataset, config.mode, strategy.name)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    image_size = int(SliceDataset(data_dir, "train").images.shape[-1])
    engine = build_engine(strategy, image_size, config, runtime)
    generators = Generators.seeded(config.seed)
    start, stopping, history = start_or_resume(work, resume, config.fingerprint(dataset, strategy.name), engine,
                                               config, generators)
    train_set, val_set = load_datasets(data_dir, engine, config, work_root / "embedding-cache")
    started = time.perf_counter()
    with _live(work, runtime) as live:
        for entry in history:  # a resumed run replays its curves, then goes on
            _log(live, entry)
        for epoch in range(start, config.max_epochs):
            if stopping.should_stop:
                break
            history.append(_epoch(engine, train_set, val_set, config, epoch, generators))
            _log(live, history[-1])
            _save(work, engine, config, stopping, history, epoch, generators, dataset, strategy.name)
    summary = _summary(dataset, strategy.name, config, stopping, len(history), engine, started)
    if runtime.is_main:
        _publish(work, out_dir, summary)
    runtime.barrier()
    return summary


def _epoch(engine: Engine, train_set: Any, val_set: Any, config: TrainConfig, epoch: int,
           generators: Generators) -> dict[str, float]:
    from tqdm import tqdm

    loss = train_epoch(engine, train_set, config.batch_size, epoch, generators.data, generators.augment)
    dice = mean_dice(engine, val_set, config.batch_size)
    lr = engine.scheduler.get_last_lr()[0]
    if engine.runtime.is_main:
        tqdm.write(f"epoch {epoch}: train loss {loss:.4f}, val Dice {dice:.4f}, lr {lr:.2e}")
    return {"train/loss": loss, "val/dice": dice, "lr": lr}


def _save(work: Path, engine: Engine, config: TrainConfig, stopping: EarlyStopping, history: list[dict[str, float]],
          epoch: int, generators: Generators, dataset: str, strategy: str) -> None:
    """Update early stopping on every process; rank 0 writes the best checkpoint and the state."""
    improved = stopping.update(epoch, history[-1]["val/dice"])
    if engine.runtime.is_main:
        if improved:
            export_checkpoint(engine.model, work / "best.pt", model_spec(strategy, config.peft), {
                "dataset": dataset, "strategy": strategy, "mode": config.mode, "epoch": epoch,
                "init": config.init, "random_init": config.checkpoint is None,
                "val_dice": history[-1]["val/dice"], "fewshot": config.fewshot})
        torch.save(history, work / "history.pt")
        save_state(work / STATE_FILE, epoch, engine.model, engine.optimizer, engine.scheduler, stopping, generators)
    engine.runtime.barrier()


@contextlib.contextmanager
def _live(work: Path, runtime: Runtime) -> Any:
    """DVCLive on rank 0; nothing elsewhere."""
    if not runtime.is_main:
        yield None
        return
    from dvclive import Live

    with Live(dir=str(work / "training"), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        yield live


def _log(live: Any, entry: dict[str, float]) -> None:
    if live is None:
        return
    for name in LOGGED:
        live.log_metric(name, entry[name])
    live.next_step()


def _publish(work: Path, out_dir: Path, summary: dict[str, Any]) -> None:
    """Move the finished run's outputs into ``out_dir`` atomically and drop the work directory."""
    with atomic_dir(out_dir) as tmp:
        shutil.copy2(work / "best.pt", tmp / "model.pt")
        shutil.copytree(work / "training", tmp / "training")
        write_json(tmp / "train_summary.json", summary)
    shutil.rmtree(work, ignore_errors=True)


def _peak_memory_mb(device: torch.device) -> int:
    import resource

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _summary(dataset: str, strategy: str, config: TrainConfig, stopping: EarlyStopping, epochs_run: int,
             engine: Engine, started: float) -> dict[str, Any]:
    total, trainable = count_parameters(engine.model)
    runtime = engine.runtime
    return {
        "dataset": dataset, "strategy": strategy, "mode": config.mode, "best_epoch": stopping.best_epoch,
        "best_val_dice": stopping.best_score, "epochs_run": epochs_run, "stopped_early": stopping.should_stop,
        "params_total": total, "params_trainable": trainable, "embedding_cache": engine.embedded,
        "random_init": config.checkpoint is None, "device": runtime.device.type, "processes": runtime.world_size,
        "precision": config.precision, "wall_time_s": round(time.perf_counter() - started, 2),
        "peak_memory_mb": _peak_memory_mb(runtime.device),
    }
