"""Dice on constructed cases with known answers."""

from __future__ import annotations

import math

import torch

from medseg.eval.metrics import dice_per_class


def _labels(*rows: list[int]) -> torch.Tensor:
    return torch.tensor([rows])


def test_perfect_and_disjoint() -> None:
    truth = _labels([1, 1, 0, 0])
    assert dice_per_class(truth, truth, 2).item() == 1.0
    assert dice_per_class(_labels([0, 0, 1, 1]), truth, 2).item() == 0.0


def test_half_overlap() -> None:
    # prediction 2 px, truth 2 px, 1 px shared -> 2*1/(2+2) = 0.5
    assert dice_per_class(_labels([1, 1, 0, 0]), _labels([0, 1, 1, 0]), 2).item() == 0.5


def test_empty_vs_empty_is_nan_and_empty_truth_with_prediction_is_zero() -> None:
    empty = _labels([0, 0, 0, 0])
    assert math.isnan(dice_per_class(empty, empty, 2).item())
    assert dice_per_class(_labels([0, 1, 0, 0]), empty, 2).item() == 0.0


def test_multi_class_scores_each_foreground_class() -> None:
    truth = _labels([1, 1, 2, 2])
    predicted = _labels([1, 1, 2, 0])
    scores = dice_per_class(predicted, truth, 3)
    assert scores.shape == (1, 2)
    assert scores[0, 0].item() == 1.0
    assert abs(scores[0, 1].item() - 2 / 3) < 1e-6
