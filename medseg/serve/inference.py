"""What ``medseg serve`` holds once loaded, and one request segmented with ``medseg predict``'s own code.

The slices of a request become scans as ``medseg predict`` reads a 2-D image (``(H, W, n)`` arrays sliced
along their last axis), so the model's recorded intensity handling and resize are replayed by
``medseg.infer.replay`` and the slices segmented by ``medseg.infer.engine``, exactly as for a file.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.data.protocol import Protocol
from medseg.infer.inputs import Scan, Source
from medseg.infer.model import PredictModel, description, identity, load_model, model_device, warnings_for
from medseg.infer.prompts import SlicePrompt, to_model
from medseg.infer.replay import ProtocolChoice, back_to_scan, model_slices, resolve_protocol
from medseg.serve.tensors import Request

LOG = logging.getLogger("medseg.serve")
REQUEST = Source(Path("request"), "image")  # a request's slices are 2-D images as predict reads them


@dataclass(frozen=True)
class Served:
    """The loaded model, what it is, the protocol it replays and where it runs."""

    model: PredictModel
    facts: dict[str, Any]
    protocol: Protocol
    protocol_source: str
    device: torch.device
    batch_size: int

    @property
    def mode(self) -> str:
        return self.model.mode


def load_served(path: Path, choice: ProtocolChoice, device: str, batch_size: int) -> Served:
    """Load the exported model (weights-only) and resolve its protocol and device; logs one line."""
    started = time.perf_counter()
    model = load_model(path)
    protocol, source = resolve_protocol(model.metadata, model.image_size, path, choice)
    served = Served(model, identity(model), protocol, source, model_device(model, device), batch_size)
    model.module.to(served.device)
    LOG.info("medseg serve: loaded %s (%s) on %s in %.1f s", path, description(served.facts), served.device,
             time.perf_counter() - started)
    for note in warnings_for(served.facts):
        LOG.warning("medseg serve: %s", note)
    return served


def _scans(images: np.ndarray, volume: bool) -> list[Scan]:
    """The request's slices as scans: one per image, or one scan of all slices (scaled together)."""
    stacks = [np.moveaxis(images, 0, -1)] if volume else [image[..., None] for image in images]
    return [Scan(REQUEST, stack, np.eye(4), stack.shape[:2]) for stack in stacks]


def segment_request(served: Served, request: Request) -> np.ndarray:
    """The label masks (N, H, W) uint8 of a checked request, in the request's own pixel grid."""
    from medseg.infer.engine import segment

    scans = _scans(request.images, request.volume)
    slices = np.concatenate([model_slices(scan, served.protocol) for scan in scans])
    prompts = None if request.prompts is None else [_slice_prompt(p, scans[0], served.model.image_size)
                                                    for p in request.prompts]
    labels = segment(served.model, slices, prompts, served.batch_size, served.device, "serve", progress=False)
    masks, start = [], 0
    for scan in scans:
        count = scan.voxels.shape[-1]
        masks.append(np.moveaxis(back_to_scan(labels[start : start + count], scan, 2), -1, 0))
        start += count
    return np.concatenate(masks)


def _slice_prompt(prompt: Any, scan: Scan, size: int) -> SlicePrompt:
    """A request prompt (image pixels, x the column) on the model's slice: the slice number is the image's
    index, as the request's slices are concatenated in order."""
    corners = np.asarray(prompt.coords, dtype=np.float64).reshape(-1, 2)
    model_xy = [to_model(np.array([y, x, 0.0]), scan, 2, size)[1] for x, y in corners]
    return SlicePrompt(prompt.image, np.concatenate(model_xy).astype(np.float32), prompt.label)


def response_parameters(served: Served) -> dict[str, str | bool | int | float]:
    """Which model answered, with honest labels (flags not recorded say so), as v2 response parameters."""
    facts = served.facts
    params: dict[str, str | bool | int | float] = {
        key: facts[key] if facts.get(key) is not None else "not recorded"
        for key in ("strategy", "mode", "init", "dataset", "random_init", "synthetic_data")}
    if facts.get("dataset") is None and facts.get("zeroshot"):
        params["dataset"] = "none (not fine-tuned)"
    params.update({"description": description(facts), "sha256": facts["sha256"], "backend": served.model.backend,
                   "protocol": f"{served.protocol.intensity} ({served.protocol_source})"})
    warnings = warnings_for(facts)
    if warnings:
        params["warnings"] = "; ".join(warnings)
    return params


def label_names(served: Served) -> str:
    """The mask's label values and class names, as a JSON object (the ``mask`` output's parameter)."""
    return json.dumps({str(value): name for value, name in sorted(served.model.names.items())})
