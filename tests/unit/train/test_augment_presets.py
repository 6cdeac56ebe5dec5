"""The ``released_code`` augmentation preset: one geometry for image and mask, deterministic per slice."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch

from helpers import tiny_params
from medseg.data.slice_dataset import SliceDataset
from medseg.train.augment import ReleasedCodeAugmentation, StudyAugmentation
from medseg.train.config import AugmentConfig, TrainConfig
from medseg.train.finetune import finetune
from medseg.train.prompted import PromptedDataset, PromptSettings
from medseg.train.setup import _augmented, _augmenter

SIZE = 48
OFF = StudyAugmentation(0.0, brightness=0.0, contrast=0.0, seed=0)  # spatial transforms alone


def _slices(count: int = 6) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Slices whose intensity encodes the label: 60 + 90 x label (label 0 is 60, not the rotation fill 0)."""
    items = []
    for index in range(count):
        mask = torch.zeros(SIZE, SIZE, dtype=torch.int64)
        mask[8 + index : 30, 10:40] = 1
        mask[14:24, 16 + index : 28] = 2
        image = (60.0 + 90.0 * mask.float()).expand(3, -1, -1).contiguous()
        items.append((image, mask))
    return items


def _augment(base: list, intensity: StudyAugmentation = OFF, seed: int = 5) -> ReleasedCodeAugmentation:
    return ReleasedCodeAugmentation(base, intensity, SIZE, (0.5, 1.5), 45.0, seed)


def _label_from_image(image: torch.Tensor) -> torch.Tensor:
    return ((image[0] - 60.0) / 90.0).round().clamp(0, 2).long() * (image[0] > 30).long()


def test_image_and_mask_move_together_and_masks_keep_their_labels() -> None:
    dataset, base = _augment(_slices()), _slices()
    moved = 0
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            image, mask = dataset[index]
            assert image.shape == (3, SIZE, SIZE) and mask.shape == (SIZE, SIZE) and mask.dtype == torch.int64
            assert set(mask.unique().tolist()) <= {0, 1, 2}  # nearest: no blended labels
            assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
            agreement = (_label_from_image(image) == mask).float().mean().item()
            assert agreement > 0.93, (epoch, index, agreement)  # only bilinear edges may disagree
            moved += not torch.equal(mask, base[index][1])
    assert moved >= 20  # nearly every draw crops or rotates


def test_draws_depend_only_on_seed_epoch_and_slice() -> None:
    first, second = _augment(_slices()), _augment(_slices())
    first.set_epoch(3)
    second.set_epoch(3)
    order = [4, 0, 2]  # another order of access (another process's share) gives the same items
    for index in order:
        assert torch.equal(first[index][0], second[index][0]) and torch.equal(first[index][1], second[index][1])
    second.set_epoch(4)
    assert any(not torch.equal(first[i][1], second[i][1]) for i in range(6))
    other_seed = _augment(_slices(), seed=6)
    other_seed.set_epoch(3)
    assert any(not torch.equal(first[i][1], other_seed[i][1]) for i in range(6))


def test_global_torch_random_state_is_untouched() -> None:
    dataset = _augment(_slices(), StudyAugmentation(1.0, brightness=0.3, contrast=0.3, seed=0))
    before = torch.random.get_rng_state()
    dataset[0]
    assert torch.equal(torch.random.get_rng_state(), before)


def test_a_slice_never_loses_its_foreground() -> None:
    mask = torch.zeros(SIZE, SIZE, dtype=torch.int64)
    mask[0:2, 0:2] = 1  # a corner object most crops and rotations remove
    dataset = _augment([((60.0 + 90.0 * mask.float()).expand(3, -1, -1).contiguous(), mask)])
    for epoch in range(40):
        dataset.set_epoch(epoch)
        assert dataset[0][1].any()


def test_intensity_transforms_change_levels_but_keep_their_order() -> None:
    """Equalisation is monotonic: the label levels move but stay ordered under the moved mask."""
    dataset = _augment(_slices(), StudyAugmentation(1.0, brightness=0.0, contrast=0.0, seed=0))
    for index in range(len(dataset)):
        image, mask = dataset[index]
        levels = [image[0][mask == label].median().item() for label in (0, 1, 2)]
        assert levels[0] < levels[1] < levels[2] and image.min() >= 0 and image.max() <= 255
        assert levels != pytest.approx([60.0, 150.0, 240.0], abs=1.0)


def test_prompted_training_data_moves_its_augmented_base_to_each_epoch() -> None:
    base = _augment(_slices())
    prompted = PromptedDataset(base, torch.ones(6, dtype=torch.bool).numpy(), "box",
                               PromptSettings(box_preset="released_code"), seed=1, stream=0)
    prompted.set_epoch(7)
    assert base.epoch == 7
    _, target, box = prompted[2]
    assert target.any() and box.shape == (4,)


def _config(**augment: object) -> TrainConfig:
    config = TrainConfig.from_params(tiny_params())
    return dataclasses.replace(config, augment=dataclasses.replace(config.augment, **augment))


def test_presets_choose_batch_or_per_slice_augmentation(ingested_sample: Path) -> None:
    train = SliceDataset(ingested_sample, "train")
    paper, released = _config(preset="paper"), _config(preset="released_code")
    assert isinstance(_augmenter(paper, cached=False), StudyAugmentation)
    assert _augmented(train, train, paper, embedded=False) is train
    assert _augmenter(released, cached=False) is None
    wrapped = _augmented(train, train, released, embedded=False)
    assert isinstance(wrapped, ReleasedCodeAugmentation) and len(wrapped) == len(train)
    assert _augmented(train, "cached", released, embedded=True) == "cached"  # cached embeddings: no augmentation
    with pytest.warns(UserWarning, match="augmentation-free"):
        assert _augmenter(released, cached=True) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _augmented(train, train, _config(preset="released_code", enabled=False), embedded=False) is train


def test_augment_settings_come_from_params_and_bad_ones_name_the_key() -> None:
    params = tiny_params()
    params["finetune"]["augment"].update(preset="released_code", crop_scale=[0.6, 1.2], max_rotation_deg=30)
    augment = TrainConfig.from_params(params).augment
    assert (augment.preset, augment.crop_scale, augment.max_rotation_deg) == ("released_code", (0.6, 1.2), 30)
    from medseg.errors import MedsegError

    for values, key in (({"preset": "fancy"}, "preset"), ({"crop_scale": (1.2, 0.6)}, "crop_scale"),
                        ({"max_rotation_deg": 270.0}, "max_rotation_deg")):
        with pytest.raises(MedsegError, match=rf"finetune\.augment\.{key}"):
            dataclasses.replace(TrainConfig.from_params(tiny_params()),
                                augment=AugmentConfig(True, 0.1, 0.3, 0.3, **values))


def test_box_training_with_both_released_code_presets_runs(ingested_sample: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(_config(preset="released_code"), mode="box", max_epochs=1, embedding_cache=False,
                                 prompts=PromptSettings(box_preset="released_code"))
    summary = finetune("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "out", config, tmp_path / "work")
    assert summary["epochs_run"] == 1 and summary["embedding_cache"] is False
    saved = json.loads((tmp_path / "out/train_summary.json").read_text())
    assert 0.0 <= saved["best_val_dice"] <= 1.0
