"""Intensity augmentations: equalisation, jitter, determinism and RNG isolation."""

from __future__ import annotations

import pytest
import torch

from medseg.train.augment import StudyAugmentation


def _images(batch: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Low-contrast grayscale slices replicated on 3 channels, in 0-255 like SliceDataset."""
    generator = torch.Generator().manual_seed(seed)
    gray = 100.0 + 20.0 * torch.rand(batch, 1, size, size, generator=generator)
    gray[:, :, size // 4: size // 2, size // 4: size // 2] += 15.0
    return gray.expand(-1, 3, -1, -1).contiguous()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_dtype_range_and_identical_channels() -> None:
    images = _images()
    out = StudyAugmentation(0.5, brightness=0.4, contrast=0.4, seed=0)(images, _gen(1))
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    assert not torch.equal(out, images)


def test_input_is_not_modified() -> None:
    images = _images()
    before = images.clone()
    StudyAugmentation(1.0, brightness=0.3, contrast=0.3, seed=0)(images, _gen(1))
    assert torch.equal(images, before)


@pytest.mark.parametrize("augment", [
    StudyAugmentation(1.0, brightness=0.5, contrast=0.5, seed=0, enabled=False),
    StudyAugmentation(0.0, brightness=0.0, contrast=0.0, seed=0),
], ids=["disabled", "zero-strength"])
def test_identity_when_disabled(augment: StudyAugmentation) -> None:
    images = _images()
    generator = _gen(3)
    state = generator.get_state()
    assert augment.is_identity and torch.equal(augment(images, generator), images)
    assert torch.equal(generator.get_state(), state)


def test_same_generator_state_gives_same_output() -> None:
    images = _images()
    augment = StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=0)
    generator = _gen(5)
    state = generator.get_state()
    first = augment(images, generator)
    generator.set_state(state)  # e.g. restored from a checkpoint
    assert torch.equal(augment(images, generator), first)
    other = StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=99)
    assert torch.equal(other(images, _gen(5)), first)


def test_different_seed_gives_different_output() -> None:
    images = _images()
    augment = StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=0)
    assert not torch.equal(augment(images, _gen(5)), augment(images, _gen(6)))


def test_default_generator_comes_from_seed() -> None:
    images = _images()
    first = StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=11)(images)
    assert torch.equal(StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=11)(images), first)


def test_global_torch_rng_is_unchanged() -> None:
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    StudyAugmentation(0.5, brightness=0.3, contrast=0.3, seed=0)(_images(), _gen(1))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_equalisation_spreads_a_low_contrast_histogram() -> None:
    images = _images()
    out = StudyAugmentation(1.0, brightness=0.0, contrast=0.0, seed=0)(images, _gen(0))
    assert (out.std(dim=(1, 2, 3)) > 3 * images.std(dim=(1, 2, 3))).all()
    assert out.amin(dim=(1, 2, 3)).max() < 5.0 and out.amax(dim=(1, 2, 3)).min() > 250.0
    assert torch.equal(out[:, 0], out[:, 2])


def test_equalisation_keeps_blank_slices() -> None:
    blank = torch.zeros(2, 3, 16, 16)
    out = StudyAugmentation(1.0, brightness=0.0, contrast=0.0, seed=0)(blank, _gen(0))
    assert torch.equal(out, blank)


def test_equalize_probability_selects_images() -> None:
    images = _images(batch=64, size=16)
    out = StudyAugmentation(0.5, brightness=0.0, contrast=0.0, seed=0)(images, _gen(2))
    changed = (out != images).flatten(1).any(dim=1)
    assert 16 < int(changed.sum()) < 48


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="equalize_probability"):
        StudyAugmentation(1.5, brightness=0.1, contrast=0.1, seed=0)
    with pytest.raises(ValueError, match="brightness"):
        StudyAugmentation(0.5, brightness=-0.1, contrast=0.1, seed=0)
    with pytest.raises(ValueError, match="shape"):
        StudyAugmentation(0.5, brightness=0.1, contrast=0.1, seed=0)(torch.zeros(3, 8, 8))
