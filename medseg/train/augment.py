"""Intensity augmentations of the study: histogram equalisation and colour jitter.

Images are float tensors ``(B, 3, S, S)`` in 0-255 whose three channels are the same grayscale slice (the
format of ``SliceDataset``). Masks are never touched: both transforms change intensities only.

* Histogram equalisation uses MONAI's ``HistogramNormalize``: it works on float images directly (no
  quantisation to uint8 first), maps to 0-255, and is applied to one channel which is then replicated, so
  the channels stay identical. Constant images (e.g. blank slices) are left unchanged rather than mapped
  to mid-grey.
* Colour jitter uses torchvision's ``v2.ColorJitter`` with brightness and contrast only; saturation and hue
  are meaningless on replicated grayscale. Brightness scales every channel alike and contrast blends with
  one shared mean, so the channels stay identical.

Randomness comes only from the ``torch.Generator`` passed to ``__call__`` (exact resume): the jitter runs
inside ``torch.random.fork_rng`` seeded from that generator, so the global torch RNG is left unchanged.
"""

from __future__ import annotations

import torch
from monai.transforms import HistogramNormalize
from monai.utils import convert_to_tensor
from torchvision.transforms import v2

MAX_INTENSITY = 255.0


class StudyAugmentation:
    """Per-image histogram equalisation (with probability) followed by brightness/contrast jitter.

    ``brightness`` and ``contrast`` are torchvision's jitter strengths (factor drawn from
    ``[max(0, 1 - x), 1 + x]``; 0 disables). ``seed`` seeds the generator used when none is passed.
    """

    def __init__(
        self, equalize_probability: float, brightness: float, contrast: float, seed: int, enabled: bool = True
    ) -> None:
        if not 0.0 <= equalize_probability <= 1.0:
            raise ValueError(f"equalize_probability must be in [0, 1], got {equalize_probability}")
        if brightness < 0 or contrast < 0:
            raise ValueError(f"brightness and contrast must be >= 0, got {brightness}, {contrast}")
        self.equalize_probability = float(equalize_probability)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.enabled = enabled
        self.generator = torch.Generator().manual_seed(seed)
        self._equalize = HistogramNormalize(num_bins=256, min=0, max=int(MAX_INTENSITY))
        self._jitter = v2.ColorJitter(brightness=self.brightness, contrast=self.contrast)

    @property
    def is_identity(self) -> bool:
        """True when a call returns its input unchanged."""
        return not self.enabled or (self.equalize_probability == 0 and self.brightness == 0 and self.contrast == 0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented copy of ``images`` (B, 3, S, S) in 0-255; the input itself when ``is_identity``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, S, S), got {tuple(images.shape)}")
        if self.is_identity:
            return images
        generator = self.generator if generator is None else generator
        equalize = torch.rand(images.shape[0], generator=generator) < self.equalize_probability
        jitter_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        out = images.detach().to("cpu", torch.float32).clone()
        for index in torch.nonzero(equalize).flatten().tolist():
            out[index] = self.equalize_image(out[index])
        if self.brightness > 0 or self.contrast > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(jitter_seed)
                for index in range(out.shape[0]):
                    out[index] = self._jitter(out[index] / MAX_INTENSITY) * MAX_INTENSITY
        return out.clamp_(0.0, MAX_INTENSITY).to(images.device, images.dtype)

    def equalize_image(self, image: torch.Tensor) -> torch.Tensor:
        """Histogram-equalised ``(3, S, S)`` image in 0-255 (from channel 0, replicated)."""
        channel = image[0]
        if bool(channel.max() == channel.min()):
            return image
        equalized = convert_to_tensor(self._equalize(channel), dtype=torch.float32, track_meta=False)
        return equalized.unsqueeze(0).expand(3, -1, -1)
