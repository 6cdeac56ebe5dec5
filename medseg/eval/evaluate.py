"""``medseg evaluate``: metrics of an exported model on the test split.

Automated models are scored on every test slice. Point and box models are scored on the test slices
with foreground, each with one simulated prompt (the study's simulation, its own random stream),
against the prompted region; candidate-mask models (original SAM) are scored under both selection
rules. Writes, atomically: ``per_slice.parquet`` (Dice, IoU, HD95, NSD per slice and class),
``per_volume.parquet`` (the same in 3-D per case; automated models only), ``metrics.json`` (DVC
metrics: means, per-patient means and patient-bootstrap 95 % intervals) and ``overlays.png``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medseg.data.slice_dataset import SliceDataset, check_ingested, read_ingest_summary, read_manifest
from medseg.errors import MedsegError
from medseg.eval.overlays import pick_slices, write_overlays
from medseg.eval.predict import Predictions, predict
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
    test = SliceDataset(data_dir, "test")
    if len(test) == 0:
        raise MedsegError("the test split has no slices", data_dir / "manifest.parquet")
    if test.images.shape[-1] != model.image_size:
        raise MedsegError(f"model expects {model.image_size}px slices, data has {test.images.shape[-1]}px",
                          model_path)
    return model, metadata, test


def _metrics(dataset: str, strategy: str, model: SamSegmenter, metadata: dict[str, Any], tables: tuple[Any, Any],
             settings: ScoreSettings, synthetic: bool) -> dict[str, Any]:
    per_slice, per_volume = tables
    selections = list(dict.fromkeys(per_slice["selection"]))
    primary = selections[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # means of all-NaN columns are reported as null
        metrics = {
            "dataset": dataset, "strategy": strategy, "mode": model.mode, "selection": primary,
            "init": metadata.get("init", "sam"), "random_init": bool(metadata.get("random_init", False)),
            "fewshot": bool(metadata.get("fewshot", False)),
            "split": "test", **summarise(per_slice, per_volume, primary, settings),
            "best_epoch": metadata.get("epoch"), "synthetic_data": synthetic, "empty_rule": settings.empty,
            "nsd_tolerance_px": settings.nsd_tolerance,
        }
        for other in selections[1:]:
            metrics[other] = summarise(per_slice, per_volume, other, settings)
    return metrics


def _overlays(path: Path, test: SliceDataset, rows: np.ndarray, predictions: Predictions, model: SamSegmenter,
              manifest: pd.DataFrame, count: int) -> None:
    chosen = pick_slices(predictions.truth, count)
    selection = predictions.selections[0]
    located = manifest.set_index("row").loc[rows[chosen]]
    titles = [f"{r.case} slice {r.slice_index}" for r in located.itertuples()]
    images = np.asarray(test.images[np.asarray(rows[chosen], dtype=np.int64)])
    write_overlays(path, images, predictions.truth[chosen], predictions.predicted[selection][chosen], titles,
                   model.num_classes)


def evaluate(dataset: str, strategy: str, data_dir: str | Path, model_path: str | Path, out_dir: str | Path,
             settings: ScoreSettings, batch_size: int, prompts: PromptSettings | None = None,
             overlay_slices: int = 4, device: str = "cpu") -> dict[str, Any]:
    """Score the model on the test split (on ``device``: auto, cpu, cuda, cuda:N or mps) and write the
    outputs to ``out_dir``; returns the metrics."""
    from medseg.train.runtime import resolve_device

    check_name(dataset, "dataset")
    check_name(strategy, "strategy")
    with output_dir("evaluate", out_dir, [data_dir, model_path]) as tmp:
        data_dir = check_ingested(data_dir)
        synthetic = bool(read_ingest_summary(data_dir).get("synthetic"))
        model, metadata, test = _load(data_dir, model_path)
        settings = dataclasses.replace(settings, num_classes=model.num_classes)
        items, rows = _scored_items(model, test, prompts or PromptSettings(), settings.seed)
        predictions = predict(model, items, batch_size, resolve_device(device))
        manifest = read_manifest(data_dir)
        per_slice = per_slice_table(manifest, rows, predictions, settings)
        automated = model.mode == "automated"  # a prompted region is one slice's object, not a volume
        per_volume = (per_volume_table(per_slice, predictions, settings) if automated
                      else pd.DataFrame(columns=VOLUME_KEYS))
        metrics = _metrics(dataset, strategy, model, metadata, (per_slice, per_volume), settings, synthetic)
        per_slice.to_parquet(tmp / "per_slice.parquet", index=False)
        per_volume.to_parquet(tmp / "per_volume.parquet", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        _overlays(tmp / "overlays.png", test, rows, predictions, model, manifest, overlay_slices)
    return metrics
