"""``medseg evaluate``: metrics of an exported model on the test split.

Automated models are scored on every test slice. Point and box models are scored on the test slices
with foreground, each with one simulated prompt (the study's simulation, its own random stream),
against the prompted region; candidate-mask models (original SAM) are scored under both selection
rules. Writes, atomically: ``per_slice.parquet`` (Dice, IoU, HD95, NSD per slice and class),
``per_volume.parquet`` (the same in 3-D per case; automated models only), ``metrics.json`` (DVC
metrics, kept short for ``dvc metrics show``: the run's identity and flags, mean Dice with its
patient-bootstrap 95 % interval, 3-D Dice, IoU, HD95, NSD, counts, the exported epoch and the epochs
run), ``metrics_details.json`` (not a DVC metric: per-class means by class name, spread, per-patient
mean, 3-D intervals, why an interval is blank, settings, training facts) and ``overlays.png``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medseg import provenance
from medseg.data.classes import ClassMap, dataset_labels
from medseg.data.slice_dataset import SliceDataset, check_ingested, read_ingest_summary, read_manifest
from medseg.errors import MedsegError
from medseg.eval.details import DETAILS_FILE, split_summary, with_details
from medseg.eval.overlays import OverlaySlices, pick_slices, view_for, write_overlays
from medseg.eval.predict import PRIMARY, Predictions, predict
from medseg.eval.scoring import VOLUME_KEYS, ScoreSettings, per_slice_table, per_volume_table, summarise
from medseg.models.checkpoints import load_exported
from medseg.models.segmenter import SamSegmenter
from medseg.names import check_name
from medseg.outputs import output_dir
from medseg.train.prompted import PromptSettings, prompted_split

TEST_STREAM = 2  # prompt random stream of the test split (train 0, val 1)


def _scored_items(model: SamSegmenter, test: SliceDataset, prompts: PromptSettings,
                  seed: int) -> tuple[Any, np.ndarray]:
    """The dataset to score and the manifest rows of its items."""
    if model.mode == "automated":
        return test, test.rows
    prompted = prompted_split(test, test, model.mode, prompts, seed, TEST_STREAM)
    return prompted, test.rows[prompted.indices]


def _load(data_dir: Path, model_path: str | Path) -> tuple[SamSegmenter, dict[str, Any], SliceDataset]:
    model, metadata = load_exported(model_path)
    classes = ClassMap.from_metadata(metadata)  # read masks as the model learnt them (narrowed classes)
    test = SliceDataset(data_dir, "test", label_lookup=classes.lookup() if classes else None)
    if len(test) == 0:
        raise MedsegError("the test split has no slices", data_dir / "manifest.parquet")
    if test.images.shape[-1] != model.image_size:
        raise MedsegError(f"model expects {model.image_size}px slices, data has {test.images.shape[-1]}px",
                          model_path)
    return model, metadata, test


def _training(model_path: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """The exported epoch (model metadata) and the epochs run (``train_summary.json`` beside the model,
    when it describes this model: same best epoch)."""
    info: dict[str, Any] = {"best_epoch": metadata.get("epoch"), "epochs_run": None}
    try:
        summary = json.loads((model_path.parent / "train_summary.json").read_text())
    except (OSError, ValueError):
        return info
    if isinstance(summary, dict) and info["best_epoch"] is not None and summary.get("best_epoch") == info["best_epoch"]:
        info.update({k: summary.get(k) for k in ("epochs_run", "stopped_early", "wall_time_s")})
    return info


def _mask_classes(metadata: dict[str, Any], ingest: dict[str, Any]) -> dict[int, str]:
    """Class names by label value as the model reads masks: its recorded classes, else ingest.json's map."""
    recorded = ClassMap.from_metadata(metadata)
    return dict(enumerate(recorded.names)) if recorded is not None else dataset_labels(ingest, "ingest.json")


def _class_names(ingest: dict[str, Any], model: SamSegmenter, metadata: dict[str, Any]) -> dict[int, str]:
    """Names of the model's foreground classes; the prompted object for point and box models (their class 1
    is whichever object was prompted)."""
    if model.mode != "automated":
        return {1: "prompted object"}
    names = _mask_classes(metadata, ingest)
    return {k: names.get(k, f"class {k}") for k in range(1, model.num_classes)}


def _prompted_names(items: Any, metadata: dict[str, Any], ingest: dict[str, Any]) -> list[str]:
    """The class name of the object each prompted item selects."""
    names = _mask_classes(metadata, ingest)
    return [names.get(label, f"class {label}") for label in (items.prompted_class(i) for i in range(len(items)))]


def _per_prompted_class(slices: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Mean Dice, IoU, HD95 and NSD of the prompted objects of each class."""
    classes: dict[str, dict[str, Any]] = {}
    for name, group in slices.groupby("prompted_class", sort=True):
        means = {f"{metric}_mean": group[f"{metric}_mean"].mean() for metric in ("dice", "iou", "hd95", "nsd")
                 if f"{metric}_mean" in group}
        classes[str(name)] = {**{k: None if pd.isna(v) else float(v) for k, v in means.items()},
                              "num_scored_slices": int(group["dice_mean"].notna().sum())}
    return classes


def _metrics(run: dict[str, Any], model: SamSegmenter, metadata: dict[str, Any], tables: tuple[Any, Any],
             settings: ScoreSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``metrics.json``: identity, flags and headline numbers; the details file: the rest)."""
    per_slice, per_volume = tables
    selections = list(dict.fromkeys(per_slice["selection"]))
    training = run["training"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN columns are reported as null
        summaries = {s: summarise(per_slice, per_volume, s, settings, run["class_names"]) for s in selections}
        if "prompted_class" in per_slice:
            for selection, summary in summaries.items():
                summary["per_class"] = _per_prompted_class(per_slice[per_slice["selection"] == selection])
    headline, details = split_summary(summaries[selections[0]])
    metrics = {
        "dataset": run["dataset"], "strategy": run["strategy"], "mode": model.mode, "selection": selections[0],
        "init": metadata.get("init", "sam"), "random_init": bool(metadata.get("random_init", False)),
        "fewshot": bool(metadata.get("fewshot", False)),
        "profile": metadata.get("profile") or ("fewshot" if metadata.get("fewshot") else "full"),
        "synthetic_data": run["synthetic"], **headline,
        "best_epoch": training["best_epoch"], "epochs_run": training["epochs_run"],
    }
    details.update(split="test", empty_rule=settings.empty, nsd_tolerance_px=settings.nsd_tolerance,
                   zeroshot=bool(metadata.get("zeroshot", False)), training=training,
                   class_names={str(k): v for k, v in run["class_names"].items()})
    for other in selections[1:]:
        metrics[other], details[other] = split_summary(summaries[other])
    return metrics, details


def _overlays(path: Path, test: SliceDataset, scored: tuple[Any, np.ndarray], predictions: Predictions,
              context: dict[str, Any], count: int) -> None:
    """The overlay figure of up to ``count`` scored slices, with their prompts (point and box models)."""
    items, rows = scored
    chosen = pick_slices(predictions.truth, count)
    selection = predictions.selections[0]
    located = context["manifest"].set_index("row").loc[rows[chosen]]
    dice = context["per_slice"].query("selection == @selection")["dice_mean"].to_numpy()
    prompts = None if items is test else [np.asarray(items[i][2], dtype=float) for i in chosen]
    data = OverlaySlices(
        images=np.asarray(test.images[np.asarray(rows[chosen], dtype=np.int64)]), truth=predictions.truth[chosen],
        predicted=predictions.predicted[selection][chosen],
        titles=[f"{r.case}\nslice {r.slice_index}" for r in located.itertuples()], prompts=prompts,
        scores=["Dice n/a (empty vs empty)" if np.isnan(dice[i]) else f"Dice {dice[i]:.2f}" for i in chosen])
    view = view_for(context["ingest"], str(located["image_file"].iloc[0]) if len(located) else "")
    write_overlays(path, data, view, context["class_names"], context["heading"])


def _heading(metrics: dict[str, Any]) -> str:
    flags = [text for key, text in (("synthetic_data", "synthetic phantom, not patient data"),
                                    ("random_init", "random-init model, not SAM's weights")) if metrics.get(key)]
    selection = "" if metrics["selection"] == PRIMARY else f", {metrics['selection']} candidate"
    text = f"{metrics['dataset']} / {metrics['mode']} / {metrics['strategy']}: test slices{selection}"
    return text + (f"\n({'; '.join(flags)})" if flags else "")


def evaluate(dataset: str, strategy: str, data_dir: str | Path, model_path: str | Path, out_dir: str | Path,
             settings: ScoreSettings, batch_size: int, prompts: PromptSettings | None = None,
             overlay_slices: int = 4, device: str = "cpu") -> dict[str, Any]:
    """Score the model on the test split (on ``device``: auto, cpu, cuda, cuda:N or mps) and write the
    outputs to ``out_dir``; returns the metrics with their details."""
    from medseg.train.runtime import resolve_device

    check_name(dataset, "dataset")
    check_name(strategy, "strategy")
    with output_dir("evaluate", out_dir, [data_dir, model_path]) as tmp:
        data_dir = check_ingested(data_dir)
        ingest = read_ingest_summary(data_dir)
        model, metadata, test = _load(data_dir, model_path)
        settings = dataclasses.replace(settings, num_classes=model.num_classes)
        items, rows = _scored_items(model, test, prompts or PromptSettings(), settings.seed)
        predictions = predict(model, items, batch_size, resolve_device(device))
        manifest = read_manifest(data_dir)
        per_slice = per_slice_table(manifest, rows, predictions, settings)
        automated = model.mode == "automated"  # a prompted region is one slice's object, not a volume
        if not automated:  # each item prompts one object of one class: score per class as well
            names = _prompted_names(items, metadata, ingest)
            per_slice["prompted_class"] = np.tile(names, len(predictions.predicted))
        per_volume = (per_volume_table(per_slice, predictions, settings) if automated
                      else pd.DataFrame(columns=VOLUME_KEYS))
        run = {"dataset": dataset, "strategy": strategy, "synthetic": bool(ingest.get("synthetic")),
               "class_names": _class_names(ingest, model, metadata), "training": _training(Path(model_path), metadata)}
        metrics, details = _metrics(run, model, metadata, (per_slice, per_volume), settings)
        record = provenance.current()
        if record is not None:  # the revision, input hashes and params digest (params in full: provenance.json)
            metrics["provenance"] = provenance.brief(record)
        per_slice.to_parquet(tmp / "per_slice.parquet", index=False)
        per_volume.to_parquet(tmp / "per_volume.parquet", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (tmp / DETAILS_FILE).write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")
        context = {"manifest": manifest, "per_slice": per_slice, "ingest": ingest,
                   "class_names": run["class_names"], "heading": _heading(metrics)}
        _overlays(tmp / "overlays.png", test, (items, rows), predictions, context, overlay_slices)
    return with_details(metrics, details)
