"""Training augmentations: the study's histogram equalisation and colour jitter (preset ``paper``), and
the released code's intensity + spatial pipeline (preset ``released_code``).

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

``ReleasedCodeAugmentation`` wraps the training slices instead (a spatial transform must move the mask
too, and prompts are simulated on the moved mask, as in the released code): per slice, the intensity
transforms above, then torchvision's ``RandomResizedCrop`` and ``RandomRotation`` with one draw for image
and mask, each slice's draws depending only on (seed, epoch, slice).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.transforms import HistogramNormalize
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

MAX_INTENSITY = 255.0
AUGMENT_STREAM = 2  # random stream of per-slice augmentation (the prompt streams are 0 and 1)


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


def slice_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch, slice index)."""
    state = np.random.SeedSequence([seed, AUGMENT_STREAM, epoch, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class ReleasedCodeAugmentation(Dataset):
    """The released code's training augmentation of ``base``'s ``(image (3, S, S) 0-255, mask (S, S))`` items,
    in its order: equalisation + jitter (``intensity``), then ``RandomResizedCrop(size, scale=crop_scale)``
    and ``RandomRotation(max_rotation_deg)`` with one draw for image (bilinear) and mask (nearest), 0 outside
    the rotated slice. A slice whose foreground the crop removes keeps its geometry (prompts need one)."""

    def __init__(self, base: Any, intensity: StudyAugmentation, size: int, crop_scale: tuple[float, float],
                 max_rotation_deg: float, seed: int) -> None:
        self.base, self.intensity, self.seed, self.epoch = base, intensity, seed, 0
        self.spatial = v2.Compose([
            v2.RandomResizedCrop(size, scale=crop_scale, antialias=True),
            v2.RandomRotation(max_rotation_deg, interpolation=InterpolationMode.BILINEAR, fill=0)])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[index]
        generator = slice_generator(self.seed, self.epoch, index)
        image = self.intensity(image.unsqueeze(0), generator)[0]
        spatial_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spatial_seed)
            moved_image, moved_mask = self.spatial(tv_tensors.Image(image), tv_tensors.Mask(mask))
        if bool(mask.any()) and not bool(moved_mask.any()):
            return image, mask
        return moved_image.as_subclass(torch.Tensor).clamp(0.0, MAX_INTENSITY), moved_mask.as_subclass(torch.Tensor)
