"""``medseg finetune``: train one SAM strategy on one ingested dataset, in automated, point or box mode.

The study's recipe (section 4.1.1): Dice + cross-entropy with equal weights (MONAI ``DiceCELoss``),
AdamW with linear warm-up, histogram equalisation + colour jitter, early stopping on validation
Dice, the best epoch exported as a self-contained checkpoint. The few-shot profile trains on the
manifest's 5 + 5 few-shot slices. Point and box modes train on simulated prompts with the prompt
encoder frozen (``medseg.train.prompted``). Decoder-only strategies can train on cached image
embeddings (``finetune.embedding_cache``): the cache is augmentation-free, so augmentations are off then.

The run lives in a work directory (``finetune.work_dir``/<dataset>/<init>/<profile>/<mode>/<strategy>),
locked for the whole run (a second run on it fails at once), holding the state committed atomically every epoch
(``medseg.train.state``); ``resume=True`` continues an interrupted run exactly, and refuses a state of
other settings, data or initial weights. Data and labels are checked before anything is written. Only
a finished run writes ``out_dir`` (model.pt, train_summary.json, training/ DVCLive logs), atomically.
Under ``torchrun`` every process trains its share of each global batch; rank 0 alone logs and writes.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from medseg import provenance
from medseg.atomic import write_json
from medseg.baselines.networks import Baseline, baseline_spec
from medseg.data.classes import ClassMap, dataset_labels, resolve_classes
from medseg.data.protocol import training_data_metadata
from medseg.data.slice_dataset import read_ingest_summary
from medseg.errors import MedsegError
from medseg.locking import exclusive_lock
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import model_spec
from medseg.models.strategies import Strategy, count_parameters, parse_strategy
from medseg.names import check_name
from medseg.outputs import output_dir
from medseg.train.config import TrainConfig
from medseg.train.loop import Engine, mean_dice, train_epoch
from medseg.train.runtime import Runtime, start_runtime
from medseg.train.setup import build_engine, load_datasets, open_splits, start_or_resume
from medseg.train.state import LOGGED, STATE_FILE, EarlyStopping, Generators, best_file, save_state, tidy


@dataclass(frozen=True)
class _Run:
    """What a run trains, on which dataset, with which settings, and where its state lives."""

    dataset: str
    strategy: Strategy | Baseline  # a SAM strategy, or a baseline network on the same engine
    config: TrainConfig
    work: Path
    classes: ClassMap  # the classes learnt (the dataset's, or those finetune.classes keeps)
    labels: dict[int, str]  # the dataset's whole label map
    data: dict[str, Any]  # what the model records of its data: ingest protocol, synthetic or not


def work_dir(work_root: str | Path, dataset: str, run_folder: str, strategy: str) -> Path:
    """Where a run keeps its resumable state: ``<work_root>/<dataset>/<init>/<profile>/<mode>/<strategy>``."""
    return Path(work_root) / dataset / run_folder / strategy


def finetune(dataset: str, strategy_id: str | Baseline, data_dir: str | Path, out_dir: str | Path,
             config: TrainConfig, work_root: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train (or resume), export the best epoch to ``<out>/model.pt``; returns the summary. The work
    directory and the output are locked for the whole run (a second run on either fails at once and
    changes nothing); the output is checked before training (it may not overlap the data, checkpoints
    or work directory) and written only when the run finishes. ``strategy_id`` may be a baseline network
    (``medseg baseline``), trained the same way in automated mode."""
    baseline = isinstance(strategy_id, Baseline)
    strategy = strategy_id if baseline else parse_strategy(strategy_id)
    dataset = check_name(dataset, "dataset")
    ingest = read_ingest_summary(data_dir)
    labels = dataset_labels(ingest, Path(data_dir) / "ingest.json")
    classes = resolve_classes(labels, config.classes.get(dataset), dataset)
    if config.num_classes == 0:  # automated: one output per class; prompts: background + the prompted object
        config = replace(config, num_classes=classes.num_classes if config.mode == "automated" else 2)
    run = _Run(dataset, strategy, config,
               work_dir(work_root, dataset, config.run_folder, strategy.name), classes, labels,
               training_data_metadata(ingest))
    inputs = [data_dir, config.checkpoint, config.encoder_checkpoint, work_root]
    with (start_runtime(config.device, config.precision) as runtime,
          on_main(runtime, lambda: output_dir("baseline" if baseline else "finetune", out_dir, inputs)) as tmp,
          on_main(runtime, lambda: exclusive_lock(run.work, "this training work directory"))):
        summary = _run(run, Path(data_dir), tmp, Path(work_root) / "embedding-cache", resume, runtime)
    if runtime.is_main:
        shutil.rmtree(run.work, ignore_errors=True)  # only once the outputs are in place
    return summary


@contextlib.contextmanager
def on_main(runtime: Runtime, enter: Callable[[], contextlib.AbstractContextManager[Any]]) -> Iterator[Any]:
    """Rank 0 enters ``enter()`` (a lock, the output folder) and yields its value, the others yield None;
    when rank 0 is refused, every process fails at once (the others learn it from rank 0)."""
    with contextlib.ExitStack() as stack:
        refused: MedsegError | None = None
        value = None
        if runtime.is_main:
            try:
                value = stack.enter_context(enter())
            except MedsegError as exc:
                refused = exc
        if runtime.sum_over_processes(torch.tensor([float(refused is not None)]))[0] > 0:
            raise refused or MedsegError("refused on the first process (see its error)")
        yield value


def _run(run: _Run, data_dir: Path, out_dir: Path | None, cache_root: Path, resume: bool,
         runtime: Runtime) -> dict[str, Any]:
    config = run.config
    run_started = time.perf_counter()  # the whole run: data checks, model, embedding cache, training
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    splits = open_splits(data_dir, config, run.classes, run.labels)  # checked before anything is built
    engine = build_engine(run.strategy, int(splits["train"].images.shape[-1]), config, runtime)
    generators = Generators.seeded(config.seed)
    fingerprint = config.fingerprint(run.dataset, getattr(run.strategy, "fingerprint_key", run.strategy.name),
                                     data_dir)
    start, stopping, history = start_or_resume(run.work, resume, fingerprint, engine, config, generators)
    train_set, val_set = load_datasets(splits, engine, config, cache_root)
    epochs_started = time.perf_counter()
    with live_curves(run.work, runtime) as live:
        for entry in history:  # a resumed run replays its curves, then goes on
            log_curves(live, entry)
        for epoch in range(start, config.max_epochs):
            if stopping.should_stop:
                break
            history.append(_epoch(engine, train_set, val_set, config, epoch, generators))
            log_curves(live, history[-1])
            _commit(run, engine, stopping, history, generators, fingerprint)
    summary = _summary(run, stopping, len(history), engine, (run_started, epochs_started))
    if out_dir is not None:  # rank 0
        _publish(run.work, out_dir, summary, best_file(stopping.best_epoch))
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


def _is_baseline(run: _Run) -> bool:
    return isinstance(run.strategy, Baseline)


def _random_init(run: _Run) -> bool:
    """SAM without its weights, or from a pretrained init whose pretraining began from random init (a baseline
    is always trained from scratch: not a random-init SAM)."""
    return not _is_baseline(run) and (run.config.checkpoint is None or run.config.init_from_random)


def _spec(run: _Run) -> dict[str, Any]:
    return baseline_spec(run.strategy) if _is_baseline(run) else model_spec(run.strategy.name, run.config.peft)


def _commit(run: _Run, engine: Engine, stopping: EarlyStopping, history: list[dict[str, float]],
            generators: Generators, fingerprint: dict[str, str]) -> None:
    """Update early stopping on every process; rank 0 writes an improved epoch's checkpoint to its own
    file, then the state (the epoch's one atomic commit), then drops the superseded checkpoint."""
    epoch, config = len(history) - 1, run.config
    improved = stopping.update(epoch, history[-1]["val/dice"])
    if engine.runtime.is_main:
        if improved:
            export_checkpoint(engine.model, run.work / best_file(epoch), _spec(run), {
                "dataset": run.dataset, "strategy": run.strategy.name, "mode": config.mode, "epoch": epoch,
                "init": "scratch" if _is_baseline(run) else config.init, "random_init": _random_init(run),
                "val_dice": history[-1]["val/dice"], "fewshot": config.fewshot, "profile": config.profile,
                **run.classes.to_metadata(config.mode), **run.data})
        save_state(run.work / STATE_FILE, epoch, engine.model, engine.optimizer, engine.scheduler, stopping,
                   generators, history, fingerprint)
        tidy(run.work, best_file(stopping.best_epoch))
    engine.runtime.barrier()


@contextlib.contextmanager
def live_curves(work: Path, runtime: Runtime) -> Any:
    """DVCLive under ``<work>/training`` on rank 0 (a resumed run replays its curves into it); nothing elsewhere."""
    if not runtime.is_main:
        yield None
        return
    from dvclive import Live

    with Live(dir=str(work / "training"), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        yield live


def log_curves(live: Any, entry: dict[str, float], names: tuple[str, ...] = LOGGED) -> None:
    """One epoch's values of the curves ``names`` (nothing off rank 0)."""
    if live is None:
        return
    for name in names:
        live.log_metric(name, entry[name])
    live.next_step()


def _publish(work: Path, out_tmp: Path, summary: dict[str, Any], best: str) -> None:
    """Copy the finished run's outputs (``best``: the best epoch's checkpoint) into the output's temporary
    folder, which becomes the output when the run ends."""
    shutil.copy2(work / best, out_tmp / "model.pt")
    shutil.copytree(work / "training", out_tmp / "training")
    write_json(out_tmp / "train_summary.json", provenance.with_brief(summary))


def peak_memory_mb(device: torch.device) -> int:
    import resource

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _summary(run: _Run, stopping: EarlyStopping, epochs_run: int, engine: Engine,
             started: tuple[float, float]) -> dict[str, Any]:
    """``started``: when the run began and when its epochs began (after the model and the embedding cache)."""
    total, trainable = count_parameters(engine.model)
    now = time.perf_counter()
    runtime, config = engine.runtime, run.config
    return {
        "dataset": run.dataset, "strategy": run.strategy.name, "mode": config.mode,
        "init": "scratch" if _is_baseline(run) else config.init, "profile": config.profile,
        "best_epoch": stopping.best_epoch,
        "best_val_dice": stopping.best_score, "epochs_run": epochs_run, "stopped_early": stopping.should_stop,
        "params_total": total, "params_trainable": trainable, "embedding_cache": engine.embedded,
        "random_init": _random_init(run), "device": runtime.device.type, "processes": runtime.world_size,
        "precision": config.precision, "wall_time_s": round(now - started[0], 2),
        "epochs_time_s": round(now - started[1], 2),
        "peak_memory_mb": peak_memory_mb(runtime.device),
    }
