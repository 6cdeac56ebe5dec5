"""Predictions of an exported model on a split: label maps per selection rule.

Class-output models (automated, and point/box fine-tuned ones) give one prediction, the argmax.
Candidate-mask models (original SAM with prompts) give two, as in the study's Tables 13 and 17:
``highest`` (the candidate with the highest predicted IoU) and ``oracle`` (the candidate with the
best Dice against the truth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medseg.models.segmenter import SamSegmenter, select_highest_confidence, select_oracle

PRIMARY = "argmax"  # the selection name of class-output models


@dataclass
class Predictions:
    """Truth and predicted label maps (N, S, S) uint8, in item order, per selection rule."""

    truth: np.ndarray
    predicted: dict[str, np.ndarray]

    @property
    def selections(self) -> list[str]:
        return list(self.predicted)


def selection_names(model: SamSegmenter) -> list[str]:
    return ["highest", "oracle"] if model.candidates else [PRIMARY]


def _predict_batch(model: SamSegmenter, images: torch.Tensor, targets: torch.Tensor,
                   prompts: torch.Tensor | None) -> dict[str, torch.Tensor]:
    if not model.candidates:
        return {PRIMARY: model(images, prompts).argmax(dim=1)}
    logits, predicted_iou = model.decode_all(model.embed(images), prompts)
    return {"highest": (select_highest_confidence(logits, predicted_iou) > 0).long(),
            "oracle": (select_oracle(logits, targets) > 0).long()}


@torch.no_grad()
def predict(model: SamSegmenter, items: Any, batch_size: int, device: torch.device | None = None) -> Predictions:
    """Run ``model`` over ``items`` (``(image, mask)`` or ``(image, target, prompt)``) on ``device``
    (the model's own device when None)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    device = device or next(model.parameters()).device
    model.to(device)
    truth: list[np.ndarray] = []
    predicted: dict[str, list[np.ndarray]] = {name: [] for name in selection_names(model)}
    for images, targets, *prompts in tqdm(DataLoader(items, batch_size=batch_size), desc="predict", unit="batch"):
        prompt = prompts[0].to(device) if prompts else None
        for name, labels in _predict_batch(model, images.to(device), targets.to(device), prompt).items():
            predicted[name].append(labels.to(torch.uint8).cpu().numpy())
        truth.append(targets.to(torch.uint8).numpy())
    empty = np.zeros((0, model.image_size, model.image_size), np.uint8)
    return Predictions(_stack(truth, empty), {name: _stack(parts, empty) for name, parts in predicted.items()})


def _stack(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else empty
