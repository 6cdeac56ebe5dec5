"""What of an evaluation goes to ``metrics.json`` (a DVC metric, kept short for ``dvc metrics show``) and
what to ``metrics_details.json`` beside it (per-class means, spread, intervals of 3-D Dice, notes)."""

from __future__ import annotations

from typing import Any

DETAILS_FILE = "metrics_details.json"
HEADLINE = ("dice_mean", "dice_ci_low", "dice_ci_high", "dice_volume_mean", "iou_mean", "hd95_mean", "nsd_mean",
            "num_slices", "num_patients")  # per selection rule, in metrics.json


def split_summary(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A selection rule's summary as (headline numbers for ``metrics.json``, the rest for the details)."""
    headline = {k: v for k, v in summary.items() if k in HEADLINE}
    return headline, {k: v for k, v in summary.items() if k not in HEADLINE}


def with_details(metrics: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` completed by ``details`` (one level deep: a selection's block gets its details too)."""
    merged = {**details, **metrics}
    for key, value in details.items():
        if isinstance(value, dict) and isinstance(metrics.get(key), dict):
            merged[key] = {**value, **metrics[key]}
    return merged
