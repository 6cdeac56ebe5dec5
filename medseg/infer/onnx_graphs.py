"""The computations ``medseg export_onnx`` writes as ONNX graphs, each mirroring a path of the PyTorch module.

- An automated model is exported as it is: images (B, 3, S, S) 0-255 -> class logits (B, K, S, S), its
  ``forward`` (SAM decodes an automated batch in one decoder call, so the batch axis stays free).
- ``EncoderGraph``: images -> image embeddings (B, 256, S/16, S/16), the module's ``embed``.
- ``DecoderGraph``: one image's embeddings (1, 256, S/16, S/16) and one prompt row (1, 2) or (1, 4) ->
  logits (1, K, S, S), the module's ``decode``; with original SAM's candidates, ``decode_all``: the three
  candidate logits and their predicted IoU (1, 3).

``exportable`` swaps, on one built model and only while it is exported, the one upstream method that fixes
the batch size during tracing: MobileSAM's ``PatchMerging.forward`` reads the batch with ``len(x)`` (a Python
int to the tracer); the replacement reads ``x.shape[0]`` and computes the same thing.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn


class EncoderGraph(nn.Module):
    """Image embeddings of images, as ``embed`` computes them."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module.embed(images)


class DecoderGraph(nn.Module):
    """One prompt's logits (and, for candidate-mask models, predicted IoU) from one image's embeddings."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, embeddings: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.module.candidates:
            return self.module.decode_all(embeddings, prompts)
        return self.module.decode(embeddings, prompts)


def _patch_merging_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MobileSAM's ``PatchMerging.forward`` with the batch read as a tensor size (same computation)."""
    if x.ndim == 3:
        height, width = self.input_resolution
        x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
    x = self.act(self.conv1(x))
    x = self.act(self.conv2(x))
    return self.conv3(x).flatten(2).transpose(1, 2)


@contextlib.contextmanager
def exportable(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` with batch-free replacements of upstream methods while the block runs (restored after)."""
    patched = []
    for child in module.modules():
        if type(child).__name__ == "PatchMerging" and type(child).__module__.startswith("mobile_sam."):
            child.forward = types.MethodType(_patch_merging_forward, child)
            patched.append(child)
    try:
        yield module
    finally:
        for child in patched:
            del child.forward
