"""Segmentation metrics (MONAI): foreground Dice per class, empty-vs-empty excluded."""

from __future__ import annotations

import torch


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) integer labels -> (B, C, H, W) one-hot floats."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()


def dice_per_class(pred_labels: torch.Tensor, true_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Dice of each foreground class for each image: (B, num_classes - 1).

    Background is excluded; a class absent from both prediction and truth is NaN (nnU-Net
    convention), and absent from the truth but predicted scores 0.
    """
    from monai.metrics import compute_dice

    return compute_dice(
        y_pred=one_hot(pred_labels, num_classes), y=one_hot(true_labels, num_classes),
        include_background=False, ignore_empty=False, num_classes=num_classes,
    ).where(~_both_empty(pred_labels, true_labels, num_classes), torch.tensor(float("nan")))


def _both_empty(pred_labels: torch.Tensor, true_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    classes = torch.arange(1, num_classes).view(1, -1, 1, 1)
    pred_any = (pred_labels.unsqueeze(1) == classes).flatten(2).any(-1)
    true_any = (true_labels.unsqueeze(1) == classes).flatten(2).any(-1)
    return ~pred_any & ~true_any
