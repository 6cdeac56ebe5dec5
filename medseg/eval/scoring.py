"""Per-slice and per-volume metric tables and their summary with bootstrap confidence intervals.

Per slice is the study's protocol (every test slice scored on its own). Per volume stacks the
scored slices of each case in slice order and scores the stack in 3-D, which is what nnU-Net users
expect; slices dropped at ingestion (empty masks, when ``ingest.drop_empty_slices``) are not part
of the stack. Confidence intervals resample patients (all slices and volumes of a patient move
together), with scipy's bootstrap (percentile method, seeded); an interval left blank says why
(``dice_ci_note``, e.g. one test patient). Per-class means are keyed by class name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from medseg.errors import MedsegError
from medseg.eval.metrics import EMPTY_RULES, all_metrics
from medseg.eval.predict import Predictions

METRICS = ("dice", "iou", "hd95", "nsd")
KEYS = ["patient", "case", "slice_index"]
VOLUME_KEYS = ["patient", "case", "selection", "num_slices"]
# MONAI 1.6 passes a deprecated argument to itself inside its HD95 and NSD (get_mask_edges,
# always_return_as_numpy): nothing to change on our side, so exactly that warning is silenced.
MONAI_EDGES_WARNING = r"(?s).*get_mask_edges:always_return_as_numpy"


@dataclass(frozen=True)
class ScoreSettings:
    """``evaluate`` settings from params.yaml."""

    num_classes: int
    nsd_tolerance: float = 2.0
    empty: str = "nan"
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ScoreSettings:
        evaluate = params["evaluate"]
        if evaluate["empty"] not in EMPTY_RULES:
            raise MedsegError(f"evaluate.empty must be one of {list(EMPTY_RULES)}, not {evaluate['empty']!r}")
        return cls(num_classes=2,  # evaluate takes the model's classes
                   nsd_tolerance=float(evaluate["nsd_tolerance_px"]), empty=str(evaluate["empty"]),
                   bootstrap_samples=int(evaluate["bootstrap_samples"]), confidence=float(evaluate["confidence"]),
                   seed=int(params["seed"]))


def _metric_columns(pred: np.ndarray, truth: np.ndarray, settings: ScoreSettings) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=MONAI_EDGES_WARNING, category=FutureWarning)
        scores = all_metrics(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)),
                             settings.num_classes, settings.nsd_tolerance, settings.empty)
    columns: dict[str, np.ndarray] = {}
    for name in METRICS:
        values = scores[name].numpy()
        for k in range(values.shape[1]):
            columns[f"{name}_class_{k + 1}"] = values[:, k]
        with np.errstate(all="ignore"):
            columns[f"{name}_mean"] = _nanmean_rows(values)
    return columns


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(values)).sum(axis=1)
    sums = np.nansum(values, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def per_slice_table(manifest: pd.DataFrame, rows: np.ndarray, predictions: Predictions,
                    settings: ScoreSettings) -> pd.DataFrame:
    """One row per scored slice and selection rule."""
    base = manifest.set_index("row").loc[rows, KEYS].reset_index()
    tables = []
    for selection, predicted in predictions.predicted.items():
        table = base.assign(selection=selection)
        for column, values in _metric_columns(predicted, predictions.truth, settings).items():
            table[column] = values
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def per_volume_table(per_slice: pd.DataFrame, predictions: Predictions, settings: ScoreSettings) -> pd.DataFrame:
    """One row per case and selection rule, scored on the stacked slices in 3-D."""
    records = []
    for selection, predicted in predictions.predicted.items():
        part = per_slice[per_slice["selection"] == selection].reset_index(drop=True)
        for (patient, case), group in part.groupby(["patient", "case"], sort=True):
            order = group.sort_values("slice_index").index.to_numpy()
            volume = _metric_columns(predicted[order][None], predictions.truth[order][None], settings)
            records.append({"patient": patient, "case": case, "selection": selection, "num_slices": len(order),
                            **{name: float(values[0]) for name, values in volume.items()}})
    return pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=VOLUME_KEYS)


def bootstrap_ci(values: np.ndarray, settings: ScoreSettings) -> tuple[float, float]:
    """Confidence interval of the mean of per-patient ``values`` (NaN with fewer than 2 patients)."""
    from scipy.stats import bootstrap

    values = values[~np.isnan(values)]
    if len(values) < 2 or np.all(values == values[0]):
        return (float("nan"), float("nan")) if len(values) < 2 else (float(values[0]), float(values[0]))
    result = bootstrap((values,), np.mean, confidence_level=settings.confidence, method="percentile",
                       n_resamples=settings.bootstrap_samples, random_state=np.random.default_rng(settings.seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def ci_note(values: np.ndarray) -> str | None:
    """Why the interval of per-patient ``values`` is blank (None when there is one)."""
    scored = int((~np.isnan(values)).sum())
    if scored >= 2:
        return None
    if scored == 0:
        return "no scored slice: no interval"
    return "one test patient: no interval" if len(values) == 1 else "one test patient with a score: no interval"


def _mean(values: pd.Series) -> float | None:
    value = float(np.nanmean(values)) if values.notna().any() else float("nan")
    return None if np.isnan(value) else value


def summarise(per_slice: pd.DataFrame, per_volume: pd.DataFrame, selection: str, settings: ScoreSettings,
              class_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Means, per-patient means and patient-bootstrap intervals of one selection rule, and per-class means
    (``per_class``, keyed by ``class_names`` or "class <k>")."""
    slices = per_slice[per_slice["selection"] == selection]
    patient_dice = slices.groupby("patient")["dice_mean"].mean()
    low, high = bootstrap_ci(patient_dice.to_numpy(dtype=float), settings)
    summary: dict[str, Any] = {
        "dice_mean": _mean(slices["dice_mean"]), "dice_std": _nan_to_none(float(np.nanstd(slices["dice_mean"]))),
        "dice_patient_mean": _mean(patient_dice), "dice_ci_low": _nan_to_none(low), "dice_ci_high": _nan_to_none(high),
        "dice_ci_note": ci_note(patient_dice.to_numpy(dtype=float)),
        **{f"{name}_mean": _mean(slices[f"{name}_mean"]) for name in METRICS if name != "dice"},
        "num_slices": len(slices), "num_scored_slices": int(slices["dice_mean"].notna().sum()),
        "num_patients": int(slices["patient"].nunique()),
    }
    volumes = per_volume[per_volume["selection"] == selection] if len(per_volume) else per_volume
    if len(volumes):
        patient_volume = volumes.groupby("patient")["dice_mean"].mean()
        low, high = bootstrap_ci(patient_volume.to_numpy(dtype=float), settings)
        summary.update(dice_volume_mean=_mean(volumes["dice_mean"]), dice_volume_ci_low=_nan_to_none(low),
                       dice_volume_ci_high=_nan_to_none(high), num_volumes=len(volumes))
    summary["per_class"] = per_class(slices, volumes, settings.num_classes, class_names or {})
    return summary


def per_class(slices: pd.DataFrame, volumes: pd.DataFrame, num_classes: int,
              names: dict[int, str]) -> dict[str, dict[str, Any]]:
    """Mean Dice (per slice and, when scored, per volume), IoU, HD95 and NSD of each foreground class."""
    classes: dict[str, dict[str, Any]] = {}
    for k in range(1, num_classes):
        column = f"dice_class_{k}"
        entry = {f"{name}_mean": _mean(slices[f"{name}_class_{k}"]) for name in METRICS}
        entry["num_scored_slices"] = int(slices[column].notna().sum())
        if len(volumes) and column in volumes:
            entry["dice_volume_mean"] = _mean(volumes[column])
        classes[names.get(k, f"class {k}")] = {"class": k, **entry}
    return classes


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else value
