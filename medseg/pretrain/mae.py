"""Masked-image-modelling pretraining of a SAM image encoder (the study's SSLSAM).

SAM's ViT-B/H encoders attend within 14 x 14 windows with relative positions, and TinyViT (ViT-T) mixes
convolutions and windows over a full feature grid: both need every patch in place. So instead of
dropping the masked patches (the MAE paper's encoder), each masked patch's embedding is replaced *in place*
by a learned mask token right after the patch embedding, before positions are added (SimMIM's scheme): the
window grid, relative positions and convolutions see a full image, and the encoder is SAM's own, unchanged.
The rest follows the MAE recipe: 75 % of the 16 x 16 patches masked at random, a light transformer decoder
over the encoder's output grid (fixed 2-D sin-cos positions) predicting each patch's pixels, and the
mean squared error of per-patch normalised pixels over the masked patches only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg.models.backbones import ENCODER_BUILDERS, PATCH_SIZE, PIXEL_MEAN, PIXEL_STD, PROMPT_EMBED_DIM


def random_masks(batch: int, side: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, side, side) bool: exactly ``round(ratio * side**2)`` masked patches per image."""
    count = round(ratio * side * side)
    order = torch.rand(batch, side * side, generator=generator).argsort(dim=1)
    masks = torch.zeros(batch, side * side, dtype=torch.bool)
    masks.scatter_(1, order[:, :count], True)
    return masks.view(batch, side, side)


def patchify(images: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) -> (B, (S/16)^2, 16 * 16 * C), patches in row-major order."""
    batch, channels, size, _ = images.shape
    side = size // PATCH_SIZE
    patches = images.reshape(batch, channels, side, PATCH_SIZE, side, PATCH_SIZE)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, side * side, PATCH_SIZE * PATCH_SIZE * channels)


def unpatchify(patches: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """The inverse of ``patchify``."""
    batch, count, _ = patches.shape
    side = int(count**0.5)
    grid = patches.reshape(batch, side, side, PATCH_SIZE, PATCH_SIZE, channels).permute(0, 5, 1, 3, 2, 4)
    return grid.reshape(batch, channels, side * PATCH_SIZE, side * PATCH_SIZE)


def normalised_patches(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reconstruction target (MAE's normalised pixels: each patch to zero mean and unit variance),
    with each patch's mean and standard deviation (to draw a prediction back in image values)."""
    patches = patchify(images)
    mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
    std = (var + 1e-6).sqrt()
    return (patches - mean) / std, mean, std


class MaeDecoder(nn.Module):
    """A light transformer over the encoder's output grid, predicting each patch's pixels."""

    def __init__(self, dim: int, depth: int, heads: int, channels: int = 3) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.Linear(PROMPT_EMBED_DIM, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, PATCH_SIZE * PATCH_SIZE * channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 256, h, w) encoder output -> (B, h * w, 16 * 16 * 3) predicted normalised patches."""
        from timm.layers import build_sincos2d_pos_embed

        _, _, height, width = features.shape
        tokens = self.project(features.flatten(2).transpose(1, 2))
        positions = build_sincos2d_pos_embed([height, width], self.dim, device=tokens.device, dtype=tokens.dtype)
        return self.head(self.norm(self.blocks(tokens + positions)))


class MaskedAutoencoder(nn.Module):
    """SAM's image encoder (``image_encoder``, unchanged) with a mask token and a light decoder."""

    def __init__(self, backbone: str, image_size: int, decoder: dict[str, Any]) -> None:
        super().__init__()
        self.backbone, self.image_size = backbone, image_size
        self.image_encoder = ENCODER_BUILDERS[backbone](image_size)
        embed = self.image_encoder.patch_embed
        self.channels_last = backbone != "vit_t"  # SAM's ViT embeds to (B, h, w, C); TinyViT to (B, C, 4h, 4w)
        width = embed.proj.out_channels if self.channels_last else embed.seq[-1].c.out_channels
        self.mask_token = nn.Parameter(torch.zeros(width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.decoder = MaeDecoder(int(decoder["dim"]), int(decoder["depth"]), int(decoder["heads"]))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        self._masks: torch.Tensor | None = None
        embed.register_forward_hook(self._mask_patches)

    def _mask_patches(self, module: nn.Module, inputs: Any, embedded: torch.Tensor) -> torch.Tensor:
        """Replace the masked patches' embeddings by the mask token, in place in the grid."""
        if self._masks is None:
            return embedded
        token = self.mask_token.to(embedded.dtype)
        if self.channels_last:
            return torch.where(self._masks[..., None], token.view(1, 1, 1, -1), embedded)
        scale = embedded.shape[-1] // self._masks.shape[-1]
        masks = self._masks.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
        return torch.where(masks[:, None], token.view(1, -1, 1, 1), embedded)

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss over the masked patches, predicted normalised patches) of images (B, 3, S, S) 0-255 with
        ``masks`` (B, S/16, S/16) True where a patch is hidden."""
        normalised = (images - self.pixel_mean) / self.pixel_std
        self._masks = masks
        try:
            predicted = self.decoder(self.image_encoder(normalised)).float()
        finally:
            self._masks = None
        target, _, _ = normalised_patches(normalised.float())
        per_patch = ((predicted - target) ** 2).mean(dim=-1)
        hidden = masks.flatten(1).float()
        return (per_patch * hidden).sum() / hidden.sum().clamp(min=1.0), predicted

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights as ``finetune --init sslsam`` loads them (``image_encoder.`` keys)."""
        return {f"image_encoder.{key}": value.detach().cpu().clone()
                for key, value in self.image_encoder.state_dict().items()}
