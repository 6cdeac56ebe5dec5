"""SAM as an automated multi-class segmenter (default prompt embeddings, no prompts)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medseg.errors import MedsegError
from medseg.models.backbones import (
    ENCODER_BUILDERS,
    PATCH_SIZE,
    PIXEL_MEAN,
    PIXEL_STD,
    build_mask_decoder,
    build_prompt_encoder,
)


class SamSegmenter(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with state-dict keys as in SAM checkpoints.

    ``forward`` takes images of shape (B, 3, S, S) with values 0-255 and returns class logits of
    shape (B, num_classes, S, S). The i-th class is the decoder's (i+1)-th mask token, as in the
    study's automated mode: ``prompt_encoder(points=None, boxes=None, masks=None)``.
    """

    def __init__(self, backbone: str, image_size: int, num_classes: int) -> None:
        super().__init__()
        if backbone not in ENCODER_BUILDERS:
            raise MedsegError(f"unknown backbone '{backbone}'; known: {sorted(ENCODER_BUILDERS)}")
        if image_size % PATCH_SIZE or image_size < 4 * PATCH_SIZE:
            raise MedsegError(f"image_size {image_size} must be a multiple of 16 and >= 64")
        if num_classes < 2:
            raise MedsegError(f"num_classes {num_classes} must count background and >= 1 class")
        self.backbone, self.image_size, self.num_classes = backbone, image_size, num_classes
        self.image_encoder = ENCODER_BUILDERS[backbone](image_size)
        self.prompt_encoder = build_prompt_encoder(image_size)
        self.mask_decoder = build_mask_decoder(num_classes)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    def encoder_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.image_encoder.parameters())

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings; no autograd graph is built when the encoder is frozen."""
        normalised = (images - self.pixel_mean) / self.pixel_std
        if self.encoder_is_frozen():
            with torch.no_grad():
                return self.image_encoder(normalised)
        return self.image_encoder(normalised)

    def decode(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Class logits at the input size from image embeddings (automated mode)."""
        sparse, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
        dense_pe = self.prompt_encoder.get_dense_pe()
        logits = []
        for embedding in embeddings:  # SAM's decoder expects one image per call
            masks, _ = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0), image_pe=dense_pe,
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=True,
            )
            logits.append(masks)
        low_res = torch.cat(logits, dim=0)
        return F.interpolate(low_res, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.embed(images))
