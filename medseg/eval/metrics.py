"""Segmentation metrics per foreground class (MONAI), for 2-D slices or 3-D volumes.

Inputs are integer label maps (B, *spatial); every function returns (B, num_classes - 1), one
column per foreground class. Conventions:

- Empty vs empty (a class absent from both prediction and truth): NaN, excluded from means (the
  nnU-Net convention). ``empty="one"`` is the paper-compatible mode: the study's reference Dice adds
  a smoothing term to numerator and denominator, so an empty prediction of an empty truth scores 1.
- A class absent from the truth but predicted (or the reverse) scores Dice and IoU 0; HD95 is
  undefined then (NaN) and NSD is 0.
- HD95 (95th percentile Hausdorff distance) and NSD (normalised surface Dice at ``tolerance``) are in
  pixel units of the evaluated arrays (slices are resampled at ingestion, so pixels, not mm).
"""

from __future__ import annotations

import warnings

import torch

EMPTY_RULES = ("nan", "one")


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, *spatial) integer labels -> (B, C, *spatial) one-hot floats."""
    encoded = torch.nn.functional.one_hot(labels.long(), num_classes)
    return encoded.movedim(-1, 1).float()


def _presence(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, num_classes - 1): whether each foreground class occurs."""
    return torch.stack([(labels == k).flatten(1).any(1) for k in range(1, num_classes)], dim=1)


def _apply_empty_rule(scores: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor, num_classes: int,
                      empty: str) -> torch.Tensor:
    if empty not in EMPTY_RULES:
        raise ValueError(f"empty must be one of {EMPTY_RULES}, got {empty!r}")
    both_empty = ~_presence(pred, num_classes) & ~_presence(truth, num_classes)
    fill = float("nan") if empty == "nan" else 1.0
    return scores.float().where(~both_empty, torch.tensor(fill))


def dice_per_class(pred: torch.Tensor, truth: torch.Tensor, num_classes: int, empty: str = "nan") -> torch.Tensor:
    """Dice of each foreground class (see the module docstring for empty masks)."""
    from monai.metrics import compute_dice

    scores = compute_dice(y_pred=one_hot(pred, num_classes), y=one_hot(truth, num_classes),
                          include_background=False, ignore_empty=False, num_classes=num_classes)
    return _apply_empty_rule(scores, pred, truth, num_classes, empty)


def iou_per_class(pred: torch.Tensor, truth: torch.Tensor, num_classes: int, empty: str = "nan") -> torch.Tensor:
    """Intersection over union of each foreground class."""
    from monai.metrics import compute_iou

    scores = compute_iou(y_pred=one_hot(pred, num_classes), y=one_hot(truth, num_classes),
                         include_background=False, ignore_empty=False)
    return _apply_empty_rule(scores, pred, truth, num_classes, empty)


def _undefined_where_one_empty(scores: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor,
                               num_classes: int) -> torch.Tensor:
    both = _presence(pred, num_classes) & _presence(truth, num_classes)
    return scores.float().where(both, torch.tensor(float("nan")))


def hd95_per_class(pred: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """95th percentile Hausdorff distance in pixels; NaN unless both masks have the class."""
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():  # MONAI warns for every empty mask; NaN says it here
        warnings.simplefilter("ignore", UserWarning)
        scores = compute_hausdorff_distance(one_hot(pred, num_classes), one_hot(truth, num_classes),
                                            include_background=False, percentile=95)
    return _undefined_where_one_empty(scores, pred, truth, num_classes)


def nsd_per_class(pred: torch.Tensor, truth: torch.Tensor, num_classes: int, tolerance: float,
                  empty: str = "nan") -> torch.Tensor:
    """Normalised surface Dice at ``tolerance`` pixels; 0 when exactly one of the masks is empty."""
    from monai.metrics import compute_surface_dice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = compute_surface_dice(one_hot(pred, num_classes), one_hot(truth, num_classes),
                                      class_thresholds=[tolerance] * (num_classes - 1), include_background=False)
    one_empty = _presence(pred, num_classes) ^ _presence(truth, num_classes)
    scores = scores.float().where(~one_empty, torch.tensor(0.0))
    return _apply_empty_rule(scores, pred, truth, num_classes, empty)


def all_metrics(pred: torch.Tensor, truth: torch.Tensor, num_classes: int, tolerance: float,
                empty: str = "nan") -> dict[str, torch.Tensor]:
    """Dice, IoU, HD95 and NSD per item and foreground class."""
    return {
        "dice": dice_per_class(pred, truth, num_classes, empty),
        "iou": iou_per_class(pred, truth, num_classes, empty),
        "hd95": hd95_per_class(pred, truth, num_classes),
        "nsd": nsd_per_class(pred, truth, num_classes, tolerance, empty),
    }
