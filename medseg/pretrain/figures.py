"""``reconstructions.png``: what masked-image-modelling pretraining learnt, drawn as the MAE paper draws it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medseg.pretrain.mae import MaskedAutoencoder, normalised_patches, patchify, unpatchify

MASKED_COLOUR = (0.16, 0.24, 0.55)  # hidden patches: a colour no grayscale slice has


@torch.no_grad()
def reconstruct(model: MaskedAutoencoder, images: torch.Tensor, masks: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(masked images as RGB in [0, 1] (N, S, S, 3), hidden patches coloured; reconstructions as 0-255 grayscale
    (N, S, S): the
    visible patches with the model's prediction in the hidden ones (each predicted patch drawn with the
    image patch's own mean and spread, since the model predicts normalised pixels)."""
    normalised = (images - model.pixel_mean) / model.pixel_std
    _, predicted = model(images, masks)
    _, mean, std = normalised_patches(normalised)
    hidden = masks.flatten(1)[..., None]
    merged = torch.where(hidden, predicted * std + mean, patchify(normalised))
    reconstructed = unpatchify(merged) * model.pixel_std + model.pixel_mean
    shown = unpatchify(torch.where(hidden, torch.zeros_like(patchify(images)), torch.ones_like(patchify(images))))
    gray = images[:, 0].clamp(0, 255).numpy() / 255.0
    masked = np.where(shown[:, 0, ..., None].numpy() > 0, gray[..., None], np.asarray(MASKED_COLOUR))
    return masked, reconstructed[:, 0].clamp(0, 255).numpy()


def draw_reconstructions(path: Path, model: MaskedAutoencoder, images: torch.Tensor, masks: torch.Tensor,
                         title: str) -> None:
    """One row per slice: the image, what the encoder saw (hidden patches in blue), the reconstruction."""
    from medseg.eval.figures import pyplot

    masked, reconstructed = reconstruct(model, images, masks)
    plt = pyplot()
    rows = len(images)
    figure, axes = plt.subplots(rows, 3, figsize=(7.5, 2.6 * rows), squeeze=False)
    ratio = float(masks.float().mean())
    for row in range(rows):
        for column, (picture, name) in enumerate(((images[row, 0].numpy(), "validation slice"),
                                                  (masked[row], f"input ({ratio:.0%} of patches hidden)"),
                                                  (reconstructed[row], "reconstruction"))):
            axes[row, column].imshow(picture, cmap="gray", vmin=0, vmax=1 if picture.ndim == 3 else 255)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(name, fontsize=9)
    figure.suptitle(f"Masked-image pretraining: {title}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
