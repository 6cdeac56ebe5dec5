"""UNet and SwinUNet baselines: MONAI networks behind the segmenter interface that the training engine and
the evaluator use for SAM in automated mode (images (B, 3, S, S) with values 0-255 in, class logits out).

- ``unet``: MONAI's ``UNet`` (2-D, residual units), channels and strides from params.
- ``swinunet``: MONAI's ``SwinUNETR`` in 2-D: a Swin-Transformer encoder with a U-shaped convolutional
  decoder, the maintained implementation in our stack of the paper's "SwinUNet" (Cao et al.'s Swin-Unet has
  no maintained package); inputs must be multiples of 32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medseg.errors import MedsegError

BASELINES = ("unet", "swinunet")  # trained by the shared engine; nnunet trains with nnU-Net's own trainer
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "unet": {"channels": [32, 64, 128, 256, 512], "strides": [2, 2, 2, 2], "num_res_units": 2},
    "swinunet": {"feature_size": 24, "depths": [2, 2, 2, 2], "num_heads": [3, 6, 12, 24]},
}


@dataclass(frozen=True)
class Baseline:
    """A baseline model id with its network settings; the engine treats it like a SAM strategy."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    component: str = "network"  # never "dec": no embedding cache

    @property
    def backbone(self) -> str:
        return self.name

    @property
    def fingerprint_key(self) -> str:
        """What a resumed run must match: the model and its network settings."""
        return f"{self.name}:{sorted(self.settings.items())}"


def parse_baseline(name: str, settings: dict[str, Any] | None = None) -> Baseline:
    """A known baseline id (``unet``, ``swinunet``) with its settings (the defaults where none given)."""
    if name not in BASELINES:
        raise MedsegError(f"unknown baseline '{name}'; known: {list(BASELINES)} (and nnunet, trained by nnU-Net)")
    merged = {**DEFAULT_SETTINGS[name], **(settings or {})}
    unknown = sorted(set(merged) - set(DEFAULT_SETTINGS[name]))
    if unknown:
        raise MedsegError(f"unknown settings {unknown} for {name}; known: {sorted(DEFAULT_SETTINGS[name])}",
                          f"baseline.{name}")
    return Baseline(name, merged)


def _network(baseline: Baseline, image_size: int, num_classes: int) -> nn.Module:
    from monai.networks.nets import SwinUNETR, UNet

    settings = baseline.settings
    if baseline.name == "unet":
        return UNet(spatial_dims=2, in_channels=3, out_channels=num_classes, channels=settings["channels"],
                    strides=settings["strides"], num_res_units=settings["num_res_units"])
    if image_size % 32:
        raise MedsegError(f"swinunet needs an image size that is a multiple of 32, not {image_size}",
                          "ingest.image_size")
    return SwinUNETR(in_channels=3, out_channels=num_classes, spatial_dims=2, feature_size=settings["feature_size"],
                     depths=settings["depths"], num_heads=settings["num_heads"])


class BaselineSegmenter(nn.Module):
    """A baseline network as a segmenter: automated mode, one output per class, trained in full."""

    def __init__(self, baseline: Baseline, image_size: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise MedsegError(f"num_classes {num_classes} must count background and >= 1 class")
        self.baseline = baseline
        self.backbone, self.image_size, self.num_classes = baseline.name, image_size, num_classes
        self.mode, self.candidates = "automated", False
        self.network = _network(baseline, image_size, num_classes)
        self.image_encoder = nn.Module()  # no pretrained encoder whose statistics training must keep
        self.register_buffer("pixel_mean", torch.full((3, 1, 1), 127.5), persistent=False)
        self.register_buffer("pixel_std", torch.full((3, 1, 1), 127.5), persistent=False)

    def encoder_is_frozen(self) -> bool:
        return False

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None, embedded: bool = False
                ) -> torch.Tensor:
        """Class logits (B, num_classes, S, S) of images (B, 3, S, S) with values 0-255."""
        if embedded or prompts is not None:
            raise MedsegError(f"{self.backbone} takes images only (no embeddings, no prompts)")
        return self.network((images.float() - self.pixel_mean) / self.pixel_std)


def baseline_spec(baseline: Baseline) -> dict[str, Any]:
    """What an exported baseline records to rebuild its architecture."""
    return {"baseline": baseline.name, "settings": dict(baseline.settings)}
