"""``medseg baseline --network nnunet``: nnU-Net trained by nnU-Net on an ingested dataset's own split.

The run exports the slices (``medseg.baselines.nnunet``), lets nnU-Net fingerprint, plan, preprocess and
train fold 0 (= our train/val split) of its ``2d`` configuration in the run's work directory, then writes
the same outputs as every training step: ``model.pt`` (nnU-Net's plans, dataset.json and final weights
in the one model format, so ``medseg evaluate`` scores it with the shared code), ``train_summary.json``,
DVCLive curves under ``training/`` (from nnU-Net's own log), and nnU-Net's own files under ``nnunet/``
(plans, dataset fingerprint, progress plot, training logs, split). ``--resume`` continues an
interrupted run with nnU-Net's ``--c`` when the data and settings are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from medseg import provenance
from medseg.atomic import write_json
from medseg.baselines import nnunet
from medseg.baselines.nnunet_model import NAME, NnunetSegmenter, NnunetSpec, nnunet_spec, read_nnunet_checkpoint
from medseg.data.classes import ClassMap, dataset_labels, resolve_classes
from medseg.data.protocol import training_data_metadata
from medseg.data.slice_dataset import read_ingest_summary
from medseg.errors import MedsegError
from medseg.locking import exclusive_lock
from medseg.models.checkpoints import export_checkpoint, first_line
from medseg.names import check_name
from medseg.outputs import output_dir
from medseg.train.config import TrainConfig
from medseg.train.fingerprint import data_fingerprint

DATASET_ID = 1  # one dataset per work directory
RUN_RECORD = "medseg_run.json"  # in the work directory: what an interrupted run must match to continue
NNUNET_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
FOLD_FILES = ("progress.png", "debug.json", "training_log_*.txt")


@dataclass(frozen=True)
class NnunetSettings:
    """``baseline.nnunet`` in params.yaml."""

    trainer: str = nnunet.DEFAULT_TRAINER
    processes: int | None = None  # nnU-Net's worker processes (None: its defaults; 0: none for augmentation)
    mirroring: bool = True  # nnU-Net's test-time mirroring when the model segments
    verify_dataset: bool = True  # nnU-Net's dataset integrity check before planning

    @classmethod
    def from_params(cls, section: dict[str, Any] | None) -> NnunetSettings:
        values = dict(section or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise MedsegError(f"unknown settings {unknown}; known: {sorted(cls.__dataclass_fields__)}",
                              "baseline.nnunet")
        return cls(**values)


def train_nnunet(dataset: str, data_dir: str | Path, out_dir: str | Path, config: TrainConfig,
                 settings: NnunetSettings, work_root: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train nnU-Net on ``dataset`` (all training slices, or the 5-shot selection when ``config.fewshot``)
    and write the run's outputs to ``out_dir``; returns the summary."""
    from medseg.train.finetune import work_dir
    from medseg.train.runtime import resolve_device

    dataset = check_name(dataset, "dataset")
    ingest = read_ingest_summary(data_dir)
    labels = dataset_labels(ingest, Path(data_dir) / "ingest.json")
    classes = config.classes.get(dataset)
    class_map = resolve_classes(labels, classes, dataset)  # unknown class names fail before anything runs
    nnunet.check_trainer(settings.trainer)
    device = resolve_device(config.device)
    work = work_dir(work_root, dataset, config.run_folder, NAME)
    record = _run_record(dataset, data_dir, config, settings)
    with (output_dir("baseline", out_dir, [data_dir, work_root]) as tmp,
          exclusive_lock(work, "this training work directory")):
        started = time.perf_counter()
        continuing = _prepare(work, record, resume, Path(data_dir), (dataset, config.fewshot, classes), settings)
        epochs_started = time.perf_counter()
        checkpoint = nnunet.train(work, DATASET_ID, settings.trainer, str(device), continue_training=continuing,
                                  processes=settings.processes)
        payload = read_nnunet_checkpoint(checkpoint)
        metadata = {**_metadata(dataset, config, payload, class_map), **training_data_metadata(ingest)}
        model = _export_model(work, payload, tmp / "model.pt", settings, metadata)
        history = _history(payload["logging"], checkpoint)
        _write_curves(tmp / "training", history)
        _copy_nnunet_files(work, nnunet.model_folder(work, DATASET_ID, settings.trainer), tmp / "nnunet")
        summary = _summary(dataset, config, history, model, device, (started, epochs_started))
        summary["trainer"], summary["nnunet_version"] = settings.trainer, version("nnunetv2")
        write_json(tmp / "train_summary.json", provenance.with_brief(summary))
    shutil.rmtree(work, ignore_errors=True)  # only once the outputs are in place
    return summary


def _run_record(dataset: str, data_dir: str | Path, config: TrainConfig, settings: NnunetSettings) -> dict[str, Any]:
    """What decides the trained model: the data, the class selection, the profile and the trainer."""
    facts = {"dataset": dataset, "fewshot": config.fewshot, "classes": config.classes.get(dataset),
             "trainer": settings.trainer}
    return {"settings": hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest(),
            "data": data_fingerprint(data_dir)}


def _prepare(work: Path, record: dict[str, Any], resume: bool, data_dir: Path,
             selection: tuple[str, bool, list[str] | None], settings: NnunetSettings) -> bool:
    """Continue an interrupted run (True), or start afresh (False): empty the work directory, export the
    slices (``selection``: dataset name, 5-shot or not, classes), plan and preprocess."""
    if resume and (work / RUN_RECORD).is_file():
        try:
            earlier = json.loads((work / RUN_RECORD).read_text())
        except ValueError as exc:
            raise MedsegError("unreadable run record; remove the work directory to start afresh",
                              work / RUN_RECORD) from exc
        changed = sorted(key for key in record if earlier.get(key) != record[key])
        if changed:
            raise MedsegError(f"cannot resume: the {' and '.join(changed)} changed since the interrupted run; "
                              "run without --resume to start afresh", work)
        fold = nnunet.model_folder(work, DATASET_ID, settings.trainer) / f"fold_{nnunet.FOLD}"
        if (fold / "checkpoint_latest.pth").is_file() or (fold / "checkpoint_final.pth").is_file():
            return True
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name, fewshot, classes = selection
    nnunet.export_dataset(data_dir, nnunet.nnunet_dirs(work).raw, DATASET_ID, name, fewshot, classes)
    nnunet.plan_and_preprocess(work, DATASET_ID, settings.processes, verify=settings.verify_dataset)
    write_json(work / RUN_RECORD, record)
    return False


def _metadata(dataset: str, config: TrainConfig, payload: dict[str, Any], classes: ClassMap) -> dict[str, Any]:
    dice = payload["logging"].get("mean_fg_dice") or [None]
    return {"dataset": dataset, "strategy": NAME, "mode": config.mode, "epoch": int(payload["current_epoch"]) - 1,
            "init": "scratch", "random_init": False, "val_dice": None if dice[-1] is None else float(dice[-1]),
            "fewshot": config.fewshot, "profile": config.profile, **classes.to_metadata(config.mode)}


def _export_model(work: Path, payload: dict[str, Any], path: Path, settings: NnunetSettings,
                  metadata: dict[str, Any]) -> NnunetSegmenter:
    """nnU-Net's final weights with its plans and dataset.json as ``model.pt``."""
    folder = nnunet.model_folder(work, DATASET_ID, settings.trainer)
    plans = json.loads((folder / "plans.json").read_text())
    dataset_json = json.loads((folder / "dataset.json").read_text())
    configuration = payload.get("init_args", {}).get("configuration", nnunet.CONFIGURATION)
    axes = payload.get("inference_allowed_mirroring_axes")
    spec = NnunetSpec(plans, dataset_json, configuration, str(payload.get("trainer_name", settings.trainer)),
                      None if axes is None else tuple(int(a) for a in axes), settings.mirroring)
    export = nnunet.read_export(nnunet.find_dataset(nnunet.nnunet_dirs(work).raw, DATASET_ID))
    model = NnunetSegmenter(spec, int(export["image_size"]), len(dataset_json["labels"]))
    try:
        model.network.load_state_dict(payload["network_weights"])
    except RuntimeError as exc:
        raise MedsegError(f"nnU-Net's weights do not fit its plans ({first_line(exc)})", folder) from exc
    export_checkpoint(model, path, nnunet_spec(spec), metadata)
    return model


def _history(logging: Any, checkpoint: Path) -> list[dict[str, float]]:
    """One entry per epoch from nnU-Net's training log: losses, its pseudo Dice (validation patches) and
    the exponential moving average it selects checkpoint_best by, learning rate."""
    columns = {"train/loss": "train_losses", "val/loss": "val_losses", "val/dice": "mean_fg_dice",
               "val/dice_ema": "ema_fg_dice", "lr": "lrs"}
    if not isinstance(logging, dict) or not all(isinstance(logging.get(k), list) for k in columns.values()):
        raise MedsegError(f"the checkpoint's training log lacks {sorted(columns.values())}", checkpoint)
    epochs = min(len(logging[k]) for k in columns.values())
    return [{name: float(logging[key][epoch]) for name, key in columns.items()} for epoch in range(epochs)]


def _write_curves(folder: Path, history: list[dict[str, float]]) -> None:
    """The curves as DVCLive writes them for every training step (``training/plots/metrics``)."""
    from dvclive import Live

    with Live(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for entry in history:
            for name, value in entry.items():
                live.log_metric(name, value)
            live.next_step()


def _copy_nnunet_files(work: Path, folder: Path, target: Path) -> None:
    """nnU-Net's own record of the run: plans, dataset.json and fingerprint, the split it trained on,
    its progress plot, debug dump and training logs."""
    target.mkdir()
    for name in NNUNET_FILES:
        if (folder / name).is_file():
            shutil.copy2(folder / name, target / name)
    splits = nnunet.find_dataset(nnunet.nnunet_dirs(work).preprocessed, DATASET_ID) / "splits_final.json"
    shutil.copy2(splits, target / "splits_final.json")
    for pattern in FOLD_FILES:
        for path in sorted((folder / f"fold_{nnunet.FOLD}").glob(pattern)):
            shutil.copy2(path, target / path.name)


def _summary(dataset: str, config: TrainConfig, history: list[dict[str, float]], model: NnunetSegmenter,
             device: Any, started: tuple[float, float]) -> dict[str, Any]:
    """``train_summary.json``, keyed like a SAM run's. nnU-Net exports its final epoch; ``best_val_dice`` is
    that epoch's pseudo Dice (nnU-Net's own validation on patches, not the evaluator's Dice)."""
    now = time.perf_counter()
    total = sum(p.numel() for p in model.parameters())
    return {
        "dataset": dataset, "strategy": NAME, "mode": config.mode, "init": "scratch", "profile": config.profile,
        "best_epoch": len(history) - 1,
        "best_val_dice": history[-1]["val/dice"] if history else None, "epochs_run": len(history),
        "stopped_early": False, "params_total": total, "params_trainable": total, "embedding_cache": False,
        "random_init": False, "fewshot": config.fewshot, "device": device.type, "processes": 1,
        "precision": "nnU-Net's (autocast on CUDA)", "wall_time_s": round(now - started[0], 2),
        "epochs_time_s": round(now - started[1], 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "peak_memory_kind": "host memory of nnU-Net's processes (GPU memory is in nnunet/training_log_*.txt)",
    }
