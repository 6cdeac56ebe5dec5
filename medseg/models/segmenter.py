"""SAM as a segmenter: automated (default prompt embeddings, one output per class) or prompted
(one point or one box per image). Prompted models either output classes like automated ones (the
study's prompt fine-tuning: background + the prompted object) or, with ``candidates=True``, SAM's
three candidate masks with predicted IoU (original SAM, evaluated by highest confidence or oracle)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medseg.errors import MedsegError
from medseg.models.backbones import (
    ENCODER_BUILDERS,
    NORMALISATIONS,
    PATCH_SIZE,
    PIXEL_MEAN,
    PIXEL_STD,
    build_mask_decoder,
    build_prompt_encoder,
)

MODES = {"automated": "default prompt embeddings, one output per class", "point": "one point prompt per image",
         "box": "one box prompt per image"}
PROMPT_CANDIDATES = 3  # SAM's multimask output: three candidate masks per prompt
PROMPT_WIDTH = {"point": 2, "box": 4}  # a prompt row: (x, y) or (x0, y0, x1, y1), input pixels


class SamSegmenter(nn.Module):
    """Image encoder + prompt encoder + mask decoder, with state-dict keys as in SAM checkpoints.

    ``forward`` takes images (B, 3, S, S) with values 0-255, or image embeddings with
    ``embedded=True``, plus ``prompts`` (B, 2) points or (B, 4) boxes in prompted modes, and returns
    class logits (B, num_classes, S, S). In automated mode the i-th class is the decoder's (i+1)-th
    mask token, as in the study: ``prompt_encoder(points=None, boxes=None, masks=None)``.
    """

    def __init__(self, backbone: str, image_size: int, num_classes: int, mode: str = "automated",
                 candidates: bool = False) -> None:
        super().__init__()
        if mode not in MODES:
            raise MedsegError(f"unknown mode '{mode}'; known: {list(MODES)}")
        if mode != "automated" and num_classes != 2:
            raise MedsegError(f"{mode} prompts segment one object: num_classes must be 2, not {num_classes}")
        if candidates and mode == "automated":
            raise MedsegError("candidate masks need point or box prompts")
        if backbone not in ENCODER_BUILDERS:
            raise MedsegError(f"unknown backbone '{backbone}'; known: {sorted(ENCODER_BUILDERS)}")
        if image_size % PATCH_SIZE or image_size < 4 * PATCH_SIZE:
            raise MedsegError(f"image_size {image_size} must be a multiple of 16 and >= 64")
        if num_classes < 2:
            raise MedsegError(f"num_classes {num_classes} must count background and >= 1 class")
        self.backbone, self.image_size, self.num_classes, self.mode = backbone, image_size, num_classes, mode
        self.candidates = candidates
        self.image_encoder = ENCODER_BUILDERS[backbone](image_size)
        self.prompt_encoder = build_prompt_encoder(image_size)
        self.mask_decoder = build_mask_decoder(PROMPT_CANDIDATES if candidates else num_classes)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        self.normalisation = "sam"

    def set_normalisation(self, name: str) -> None:
        """Normalise inputs as the weights expect: ``sam`` (SAM's mean and std) or ``medsam`` ([0, 1])."""
        if name not in NORMALISATIONS:
            raise MedsegError(f"unknown normalisation '{name}'; known: {sorted(NORMALISATIONS)}")
        mean, std = NORMALISATIONS[name]
        self.pixel_mean.copy_(torch.tensor(mean).view(-1, 1, 1))
        self.pixel_std.copy_(torch.tensor(std).view(-1, 1, 1))
        self.normalisation = name

    def encoder_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.image_encoder.parameters())

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings; no autograd graph is built when the encoder is frozen."""
        normalised = (images - self.pixel_mean) / self.pixel_std
        if self.encoder_is_frozen():
            with torch.no_grad():
                return self.image_encoder(normalised)
        return self.image_encoder(normalised)

    def _prompt_embeddings(self, prompts: torch.Tensor | None, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "automated":
            return self.prompt_encoder(points=None, boxes=None, masks=None)
        row = prompts[index : index + 1].float()
        if self.mode == "box":
            return self.prompt_encoder(points=None, boxes=row, masks=None)
        labels = torch.ones(1, 1, dtype=torch.long, device=row.device)  # one foreground point
        return self.prompt_encoder(points=(row.view(1, 1, 2), labels), boxes=None, masks=None)

    def _check_prompts(self, prompts: torch.Tensor | None, inputs: torch.Tensor) -> None:
        """Prompts fit the inputs' batch (the batch size is read only in prompted modes: an automated model's
        batch axis stays free when the model is exported)."""
        if self.mode == "automated":
            if prompts is not None:
                raise MedsegError("an automated-mode model takes no prompts")
            return
        batch, width = int(inputs.shape[0]), PROMPT_WIDTH[self.mode]
        if prompts is None or tuple(prompts.shape) != (batch, width):
            shape = None if prompts is None else tuple(prompts.shape)
            raise MedsegError(f"a {self.mode}-mode model needs prompts of shape ({batch}, {width}), got {shape}")

    def decode_all(self, embeddings: torch.Tensor, prompts: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits at the input size (B, outputs, S, S) and predicted IoU (B, outputs).

        Automated mode decodes the batch in one call: every image has the same default prompt, whose tokens
        SAM's two-way transformer broadcasts over the images (the numbers of one call per image). A prompt
        belongs to one image, so prompted modes call the decoder once per image, as SAM does."""
        self._check_prompts(prompts, embeddings)
        dense_pe = self.prompt_encoder.get_dense_pe()
        if self.mode == "automated":
            masks, scores = self._decode_one_call(embeddings, dense_pe, None, 0)
        else:
            decoded = [self._decode_one_call(embedding.unsqueeze(0), dense_pe, prompts, index)
                       for index, embedding in enumerate(embeddings)]
            masks, scores = torch.cat([m for m, _ in decoded]), torch.cat([s for _, s in decoded])
        size = (self.image_size, self.image_size)
        return F.interpolate(masks, size=size, mode="bilinear", align_corners=False), scores

    def _decode_one_call(self, embeddings: torch.Tensor, dense_pe: torch.Tensor, prompts: torch.Tensor | None,
                         index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self._prompt_embeddings(prompts, index)
        return self.mask_decoder(image_embeddings=embeddings, image_pe=dense_pe,
                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                 multimask_output=True)

    def decode(self, embeddings: torch.Tensor, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (B, num_classes, S, S) from image embeddings."""
        if self.candidates:
            raise MedsegError("a candidate-mask model has no class outputs: use decode_all and a selection rule")
        return self.decode_all(embeddings, prompts)[0]

    def forward(self, inputs: torch.Tensor, prompts: torch.Tensor | None = None,
                embedded: bool = False) -> torch.Tensor:
        """Class logits from images (or image embeddings when ``embedded``)."""
        if self.candidates:  # before the encoder runs
            raise MedsegError("a candidate-mask model has no class outputs: use decode_all and a selection rule")
        self._check_prompts(prompts, inputs)  # before the encoder runs
        return self.decode(inputs if embedded else self.embed(inputs), prompts)


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
