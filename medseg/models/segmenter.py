"""SAM as a segmenter: automated (default prompt embeddings, one output per class) or prompted
(point or box prompts, three candidate masks with predicted IoU, as in SAM)."""

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

MODES = {"automated": "default prompt embeddings, one output per class", "point": "point prompts",
         "box": "box prompts"}
PROMPT_CANDIDATES = 3  # SAM's multimask output: three candidate masks per prompt


class SamSegmenter(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with state-dict keys as in SAM checkpoints.

    ``forward`` takes images of shape (B, 3, S, S) with values 0-255 and returns class logits of
    shape (B, num_classes, S, S). The i-th class is the decoder's (i+1)-th mask token, as in the
    study's automated mode: ``prompt_encoder(points=None, boxes=None, masks=None)``.
    """

    def __init__(self, backbone: str, image_size: int, num_classes: int, mode: str = "automated") -> None:
        super().__init__()
        if mode not in MODES:
            raise MedsegError(f"unknown mode '{mode}'; known: {list(MODES)}")
        if mode != "automated" and num_classes != 2:
            raise MedsegError(f"{mode} prompts segment one object: num_classes must be 2, not {num_classes}")
        if backbone not in ENCODER_BUILDERS:
            raise MedsegError(f"unknown backbone '{backbone}'; known: {sorted(ENCODER_BUILDERS)}")
        if image_size % PATCH_SIZE or image_size < 4 * PATCH_SIZE:
            raise MedsegError(f"image_size {image_size} must be a multiple of 16 and >= 64")
        if num_classes < 2:
            raise MedsegError(f"num_classes {num_classes} must count background and >= 1 class")
        self.backbone, self.image_size, self.num_classes, self.mode = backbone, image_size, num_classes, mode
        self.image_encoder = ENCODER_BUILDERS[backbone](image_size)
        self.prompt_encoder = build_prompt_encoder(image_size)
        self.mask_decoder = build_mask_decoder(num_classes if mode == "automated" else PROMPT_CANDIDATES)
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

    def decode_prompted(self, embeddings: torch.Tensor, points: torch.Tensor | None = None,
                        point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point or box prompts -> (candidate mask logits (B, 3, S, S), predicted IoU (B, 3)).

        ``points`` (B, N, 2) and ``boxes`` (B, 4) are (x, y) pixel coordinates of the input image;
        ``point_labels`` (B, N) are 1 for foreground and 0 for background points."""
        logits, scores = [], []
        dense_pe = self.prompt_encoder.get_dense_pe()
        for i, embedding in enumerate(embeddings):
            sparse, dense = self.prompt_encoder(
                points=None if points is None else (points[i : i + 1], point_labels[i : i + 1]),
                boxes=None if boxes is None else boxes[i : i + 1], masks=None,
            )
            masks, iou = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0), image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=True,
            )
            logits.append(masks)
            scores.append(iou)
        upsampled = F.interpolate(torch.cat(logits), size=(self.image_size, self.image_size),
                                  mode="bilinear", align_corners=False)
        return upsampled, torch.cat(scores)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.mode != "automated":
            raise MedsegError(f"a {self.mode}-mode model needs prompts: call decode_prompted")
        return self.decode(self.embed(images))


def select_highest_confidence(logits: torch.Tensor, predicted_iou: torch.Tensor) -> torch.Tensor:
    """The candidate mask with the highest predicted IoU, per image: (B, S, S) logits."""
    best = predicted_iou.argmax(dim=1)
    return logits[torch.arange(len(logits)), best]


def select_oracle(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The candidate mask with the best Dice against the ground truth (B, S, S), per image."""
    predicted = logits > 0
    target = (truth > 0).unsqueeze(1)
    overlap = (predicted & target).flatten(2).sum(-1)
    sizes = predicted.flatten(2).sum(-1) + target.flatten(2).sum(-1)
    dice = 2 * overlap / sizes.clamp(min=1)
    return logits[torch.arange(len(logits)), dice.argmax(dim=1)]
