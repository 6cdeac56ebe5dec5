"""Metrics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.eval.metrics import all_metrics, dice_per_class, hd95_per_class, iou_per_class, nsd_per_class
from medseg.eval.scoring import ScoreSettings, bootstrap_ci


def _labels(values: list[int]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, -1)


def _square(size: int, top: int, left: int, side: int, value: int = 1) -> torch.Tensor:
    image = torch.zeros(1, size, size, dtype=torch.long)
    image[0, top : top + side, left : left + side] = value
    return image


def test_perfect_and_disjoint() -> None:
    truth = _labels([0, 1, 1, 0])
    assert dice_per_class(truth, truth, 2).item() == 1.0 and iou_per_class(truth, truth, 2).item() == 1.0
    assert dice_per_class(_labels([0, 0, 0, 1]), truth, 2).item() == 0.0
    assert iou_per_class(_labels([0, 0, 0, 1]), truth, 2).item() == 0.0


def test_half_overlap() -> None:
    pred, truth = _labels([1, 1, 0, 0]), _labels([0, 1, 1, 0])
    assert dice_per_class(pred, truth, 2).item() == 0.5
    assert iou_per_class(pred, truth, 2).item() == pytest.approx(1 / 3)


def test_empty_vs_empty_is_nan_or_one_in_paper_mode() -> None:
    empty = _labels([0, 0, 0, 0])
    for metric in (dice_per_class, iou_per_class):
        assert math.isnan(metric(empty, empty, 2).item())
        assert metric(empty, empty, 2, empty="one").item() == 1.0
    with pytest.raises(ValueError, match="empty"):
        dice_per_class(empty, empty, 2, empty="zero")


def test_empty_vs_nonempty_scores_zero_and_distance_is_undefined() -> None:
    empty, square = torch.zeros(1, 16, 16, dtype=torch.long), _square(16, 4, 4, 4)
    for pred, truth in ((square, empty), (empty, square)):
        assert dice_per_class(pred, truth, 2).item() == 0.0
        assert math.isnan(hd95_per_class(pred, truth, 2).item())
        assert nsd_per_class(pred, truth, 2, tolerance=1.0).item() == 0.0


def test_multiclass_scores_each_class() -> None:
    truth = torch.tensor([[[1, 1, 2, 2, 0, 0]]])
    pred = torch.tensor([[[1, 1, 2, 0, 0, 0]]])
    dice = dice_per_class(pred, truth, 4)
    assert dice.shape == (1, 3)
    assert dice[0, 0].item() == 1.0 and dice[0, 1].item() == pytest.approx(2 / 3) and math.isnan(dice[0, 2].item())


def test_distances_of_a_shifted_square() -> None:
    truth, shifted = _square(32, 8, 8, 10), _square(32, 8, 11, 10)  # moved 3 px to the right
    assert hd95_per_class(truth, truth, 2).item() == 0.0
    assert hd95_per_class(shifted, truth, 2).item() == pytest.approx(3.0)
    assert nsd_per_class(shifted, truth, 2, tolerance=3.0).item() == pytest.approx(1.0)
    assert nsd_per_class(shifted, truth, 2, tolerance=1.0).item() < 0.8


def test_per_volume_differs_from_the_mean_of_its_slices() -> None:
    """A small slice with a poor score weighs less in 3-D Dice than in the per-slice mean."""
    truth = torch.zeros(2, 8, 8, dtype=torch.long)
    pred = torch.zeros(2, 8, 8, dtype=torch.long)
    truth[0, :, :] = 1  # a large slice, perfectly predicted
    pred[0, :, :] = 1
    truth[1, 0, 0:2] = 1  # a small slice, half predicted
    pred[1, 0, 1:3] = 1
    per_slice = dice_per_class(pred, truth, 2).mean().item()
    per_volume = dice_per_class(pred.unsqueeze(0), truth.unsqueeze(0), 2).item()  # (1, D, H, W)
    assert per_slice == pytest.approx(0.75)
    assert per_volume == pytest.approx(2 * 65 / (66 + 66))


def test_all_metrics_names() -> None:
    square = _square(16, 2, 2, 6)
    metrics = all_metrics(square, square, 2, tolerance=1.0)
    assert set(metrics) == {"dice", "iou", "hd95", "nsd"}
    assert [metrics[k].item() for k in ("dice", "iou", "hd95", "nsd")] == [1.0, 1.0, 0.0, 1.0]


def test_bootstrap_interval_over_patients() -> None:
    settings = ScoreSettings(num_classes=2, bootstrap_samples=2000, seed=3)
    values = np.array([0.2, 0.4, 0.6, 0.8, np.nan])  # NaN: a patient with nothing to score
    low, high = bootstrap_ci(values, settings)
    assert 0.2 <= low < 0.5 < high <= 0.8 and (low, high) == bootstrap_ci(values, settings)
    narrower = bootstrap_ci(values, ScoreSettings(num_classes=2, bootstrap_samples=2000, seed=3, confidence=0.5))
    assert low < narrower[0] < narrower[1] < high
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([0.7]), settings))


def test_scoring_silences_exactly_monai_s_get_mask_edges_deprecation() -> None:
    import warnings

    import pandas as pd

    from medseg.eval.predict import Predictions
    from medseg.eval.scoring import per_slice_table

    truth = np.zeros((3, 16, 16), np.uint8)
    truth[:, 3:9, 3:9] = 1
    predicted = np.roll(truth, 2, axis=2)
    manifest = pd.DataFrame({"row": [0, 1, 2], "patient": ["a", "a", "b"], "case": ["a", "a", "b"],
                             "slice_index": [0, 1, 0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = per_slice_table(manifest, np.arange(3), Predictions(truth, {"argmax": predicted}),
                                ScoreSettings(num_classes=2))
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)  # still shown
    messages = [str(w.message) for w in caught]
    assert table["hd95_class_1"].notna().all()  # HD95 and NSD ran (they call MONAI's get_mask_edges)
    assert not any("always_return_as_numpy" in m for m in messages) and "another FutureWarning" in messages


def test_a_blank_interval_says_why() -> None:
    from medseg.eval.scoring import ci_note

    assert ci_note(np.array([0.5])) == "one test patient: no interval"
    assert ci_note(np.array([0.5, np.nan])) == "one test patient with a score: no interval"
    assert ci_note(np.array([np.nan, np.nan])) == "no scored slice: no interval"
    assert ci_note(np.array([0.5, 0.7])) is None
