"""``medseg evaluate``: per-slice foreground Dice of an exported model on the test split.

Automated models are scored on every test slice. Point and box models are scored on the test slices
with foreground, each with one simulated prompt (the study's simulation, its own random stream),
against the prompted region."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.atomic import atomic_dir
from medseg.data.slice_dataset import SliceDataset, check_ingested, read_manifest
from medseg.errors import MedsegError
from medseg.eval.metrics import dice_per_class
from medseg.models.checkpoints import load_exported
from medseg.train.prompted import PromptedDataset, PromptSettings

TEST_STREAM = 2  # prompt random stream of the test split (train 0, val 1)


@torch.no_grad()
def predict_dice(model: Any, dataset: Any, batch_size: int) -> np.ndarray:
    """Dice per item and foreground class: (N, num_classes - 1), NaN where both empty. Items are
    ``(image, mask)`` or, for prompted models, ``(image, target, prompt)``."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    scores = []
    for images, masks, *prompts in tqdm(DataLoader(dataset, batch_size=batch_size), desc="evaluate", unit="batch"):
        logits = model(images, prompts[0] if prompts else None)
        scores.append(dice_per_class(logits.argmax(dim=1), masks, model.num_classes))
    return torch.cat(scores).numpy()


def _scored_items(model: Any, test: SliceDataset, prompts: PromptSettings, seed: int) -> tuple[Any, np.ndarray]:
    """The dataset to score and the manifest rows of its items."""
    if model.mode == "automated":
        return test, test.rows
    foreground = np.array([bool(np.asarray(test.masks[row]).any()) for row in test.rows], dtype=bool)
    if not foreground.any():
        raise MedsegError(f"no test slice has foreground to prompt ({model.mode} mode)")
    prompted = PromptedDataset(test, foreground, model.mode, prompts, seed, TEST_STREAM)
    return prompted, test.rows[prompted.indices]


def _per_slice_table(manifest: Any, rows: np.ndarray, dice: np.ndarray) -> Any:
    table = manifest.set_index("row").loc[rows, ["patient", "case", "slice_index"]].reset_index()
    for k in range(dice.shape[1]):
        table[f"dice_class_{k + 1}"] = dice[:, k]
    table["dice_mean"] = np.nanmean(dice, axis=1) if dice.size else []
    return table


def evaluate(dataset: str, strategy: str, data_dir: str | Path, model_path: str | Path,
             out_dir: str | Path, batch_size: int, prompts: PromptSettings | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Write ``per_slice.parquet`` and ``metrics.json`` to ``out_dir`` atomically."""
    data_dir = check_ingested(data_dir)
    model, metadata = load_exported(model_path)
    test = SliceDataset(data_dir, "test")
    if len(test) == 0:
        raise MedsegError("the test split has no slices", data_dir / "manifest.parquet")
    if test.images.shape[-1] != model.image_size:
        raise MedsegError(f"model expects {model.image_size}px slices, data has "
                          f"{test.images.shape[-1]}px", model_path)
    items, rows = _scored_items(model, test, prompts or PromptSettings(), seed)
    dice = predict_dice(model, items, batch_size)
    table = _per_slice_table(read_manifest(data_dir), rows, dice)
    summary_in = json.loads((data_dir / "ingest.json").read_text())
    patient_dice = table.groupby("patient")["dice_mean"].mean()
    metrics = {
        "dataset": dataset, "strategy": strategy, "mode": model.mode,
        "split": "test", "dice_mean": float(np.nanmean(table["dice_mean"])),
        "dice_std": float(np.nanstd(table["dice_mean"])),
        "dice_patient_mean": float(patient_dice.mean()),
        "num_slices": len(table), "num_patients": int(table["patient"].nunique()),
        "best_epoch": metadata.get("epoch"), "synthetic_data": bool(summary_in.get("synthetic")),
    }
    with atomic_dir(out_dir) as tmp:
        table.to_parquet(tmp / "per_slice.parquet", index=False)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
