"""Batched inference on model slices, with a progress bar.

Automated models segment every slice (argmax over classes, mapped to the written label values). Prompted
models segment only prompted slices: each slice is encoded once and every prompt on it decoded from that
embedding; a prompt's foreground (class 1, or the candidate mask with the highest predicted IoU for
original SAM) takes the prompt's label, later prompts over earlier ones where they overlap.

The model's module is the PyTorch module or, for an ``export_onnx`` folder, ``OnnxSegmenter``: the same calls
(``module(images)``, ``embed``, ``decode``, ``decode_all``) answered by onnxruntime sessions, so both backends
share this code.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

from medseg.infer.model import PredictModel, value_table
from medseg.infer.prompts import SlicePrompt


def _inputs(slices: np.ndarray, rows: list[int], device: torch.device) -> torch.Tensor:
    """uint8 slices -> float (B, 3, S, S) in 0-255, the grayscale repeated, as training fed them."""
    batch = torch.from_numpy(np.ascontiguousarray(slices[rows])).to(device).float()
    return batch[:, None].expand(-1, 3, -1, -1).contiguous()


@torch.no_grad()
def segment(model: PredictModel, slices: np.ndarray, prompts: list[SlicePrompt] | None, batch_size: int,
            device: torch.device, desc: str, progress: bool = True) -> np.ndarray:
    """Label slices (N, S, S) uint8 of ``slices`` (N, S, S) uint8 (``progress``: show a progress bar)."""
    from tqdm import tqdm

    model.module.to(device)
    labels = np.zeros(slices.shape, dtype=np.uint8)
    by_slice: dict[int, list[SlicePrompt]] = defaultdict(list)
    for prompt in prompts or []:
        by_slice[prompt.slice].append(prompt)
    rows = list(range(len(slices))) if prompts is None else sorted(by_slice)
    with tqdm(total=len(rows), desc=desc, unit="slice", disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            if prompts is None:
                labels[batch] = _automated(model, _inputs(slices, batch, device))
            else:
                labels[batch] = _prompted(model, _inputs(slices, batch, device), [by_slice[row] for row in batch],
                                          batch_size)
            bar.update(len(batch))
    return labels


def _automated(model: PredictModel, images: torch.Tensor) -> np.ndarray:
    classes = model.module(images).argmax(dim=1).cpu().numpy()
    return value_table(model)[classes]


def _prompted(model: PredictModel, images: torch.Tensor, prompts: list[list[SlicePrompt]],
              batch_size: int) -> np.ndarray:
    """The batch's label slices: each prompt's object painted with its label."""
    module = model.module
    embeddings = module.embed(images)
    out = np.zeros((len(images), *images.shape[-2:]), dtype=np.uint8)
    flat = [(index, prompt) for index, slice_prompts in enumerate(prompts) for prompt in slice_prompts]
    for start in range(0, len(flat), batch_size):
        chunk = flat[start : start + batch_size]
        rows = torch.tensor([index for index, _ in chunk], device=embeddings.device)
        coords = torch.from_numpy(np.stack([prompt.coords for _, prompt in chunk])).to(embeddings.device)
        foreground = _foreground(module, embeddings[rows], coords).cpu().numpy()
        for (index, prompt), mask in zip(chunk, foreground, strict=True):
            out[index][mask] = prompt.label
    return out


def _foreground(module: Any, embeddings: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    from medseg.models.segmenter import select_highest_confidence

    if module.candidates:
        logits, predicted_iou = module.decode_all(embeddings, coords)
        return select_highest_confidence(logits, predicted_iou) > 0
    return module.decode(embeddings, coords).argmax(dim=1) == 1
