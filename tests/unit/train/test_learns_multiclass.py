"""Multi-class training learns every class (issue #12 item 4), on a SYNTHETIC multi-class phantom.

Five classes (background + four bright structures of decreasing size) need six mask tokens, more than
SAM's stock four. From random init a run first predicts background everywhere (val Dice exactly 0 for its
first epochs), then learns every class: a zero after three epochs is under-training, not a class mapping
defect. Runs use random init, the study's lr 1e-4 and no augmentation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import default_collate

from helpers import tiny_params
from medseg.data.sample import PhantomSpec, write_sample
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.eval.metrics import dice_per_class
from medseg.models.checkpoints import load_exported, load_sam_weights
from medseg.models.segmenter import SamSegmenter
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune

CLASSES = 5
ALIAS = "phantom_multiclass"


def ingest_phantom(root: Path, num_classes: int, alias: str, patients: int = 12) -> Path:
    """A SYNTHETIC multi-class phantom (48 x 48 x 10 voxels per patient), registered as ``alias`` through an
    extra registry and ingested at 64 px; returns the ingested folder."""
    from medseg.data.ingest import ingest_dataset

    spec = PhantomSpec(num_patients=patients, shape=(48, 48, 10), spacing_mm=(1.5, 1.5, 5.0), noise_hu=25.0,
                       lesion_contrast_hu=35.0, num_classes=num_classes)
    write_sample(root / "raw", spec, seed=1234)
    entry = yaml.safe_load((Path(__file__).parents[3] / "medseg/data/registry/sample.yaml").read_text())
    entry.update(alias=alias, name=f"Multi-class phantom ({alias}, synthetic)",
                 description="Synthetic multi-class phantom for tests; NOT patient data",
                 labels={0: "background", **{k: f"structure_{k}" for k in range(1, num_classes)}})
    (root / "registry").mkdir()
    (root / "registry" / f"{alias}.yaml").write_text(yaml.safe_dump(entry))
    ingest = {**tiny_params()["ingest"], "image_size": 64, "extra_registries": [str(root / "registry")]}
    ingest_dataset(alias, root / "raw", root / "ingested", ingest, 1234)
    return root / "ingested"


@pytest.fixture(scope="module")
def multiclass_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("multiclass")
    ingest_phantom(root, CLASSES, ALIAS)
    return root


def per_class_test_dice(model: torch.nn.Module, data: Path, classes: int) -> list[float]:
    """Mean Dice of each foreground class over the held-out test slices (empty vs empty left out)."""
    inputs, masks = default_collate(list(SliceDataset(data, "test")))
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1)
    return torch.nanmean(dice_per_class(predicted, masks, classes), dim=0).tolist()


def _train(strategy: str, data: Path, tmp_path: Path, epochs: int) -> dict[str, object]:
    config = TrainConfig.from_params(tiny_params())
    config = dataclasses.replace(config, num_classes=CLASSES, max_epochs=epochs, early_stopping_patience=0,
                                 num_threads=1, augment=dataclasses.replace(config.augment, enabled=False))
    return finetune(ALIAS, strategy, data, tmp_path / "out", config, tmp_path / "work")


def test_multiclass_phantom_has_every_class_with_distinct_sizes_and_levels(multiclass_root: Path) -> None:
    meta = json.loads((multiclass_root / "raw/dataset.json").read_text())
    assert meta["labels"] == {"0": "background", **{str(k): f"structure_{k}" for k in range(1, CLASSES)}}
    assert "synthetic" in meta["description"].lower()
    images = [np.asarray(nib.load(str(multiclass_root / "raw" / e["image"])).dataobj) for e in meta["training"]]
    labels = [np.asarray(nib.load(str(multiclass_root / "raw" / e["label"])).dataobj) for e in meta["training"]]
    image, label = np.concatenate(images, axis=2), np.concatenate(labels, axis=2)
    sizes = np.bincount(label.ravel(), minlength=CLASSES)
    levels = [float(np.median(image[label == k])) for k in range(1, CLASSES)]
    assert sizes.size == CLASSES and all(sizes[k] > sizes[k + 1] > 0 for k in range(1, CLASSES - 1))
    assert levels == sorted(levels) and levels[0] > 200  # brighter than soft tissue, class by class


def test_multiclass_phantom_bytes_repeat_and_bad_class_counts_name_the_key(tmp_path: Path) -> None:
    spec = PhantomSpec(num_patients=2, shape=(24, 24, 6), spacing_mm=(1.5, 1.5, 5.0), noise_hu=25.0,
                       lesion_contrast_hu=35.0, num_classes=4)
    for name in ("a", "b"):
        write_sample(tmp_path / name, spec, seed=7)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert PhantomSpec.from_params(tiny_params()["sample"]).num_classes == 2  # the demo stays one lesion
    with pytest.raises(MedsegError, match=r"sample\.num_classes"):
        dataclasses.replace(spec, num_classes=1)


def test_decoder_only_training_learns_every_class(multiclass_root: Path, tmp_path: Path) -> None:
    summary = _train("vit_t_dec_vanilla", multiclass_root / "ingested", tmp_path, epochs=8)
    model, _ = load_exported(tmp_path / "out/model.pt")
    assert model.mask_decoder.num_mask_tokens == CLASSES + 1 > 4  # beyond SAM's four stock tokens
    dice = per_class_test_dice(model, multiclass_root / "ingested", CLASSES)
    assert len(dice) == CLASSES - 1 and min(dice) > 0.25, (dice, summary)


def test_encoder_and_decoder_training_learns_every_class(multiclass_root: Path, tmp_path: Path) -> None:
    summary = _train("vit_t_endec_vanilla", multiclass_root / "ingested", tmp_path, epochs=6)
    model, _ = load_exported(tmp_path / "out/model.pt")
    dice = per_class_test_dice(model, multiclass_root / "ingested", CLASSES)
    assert len(dice) == CLASSES - 1 and min(dice) > 0.25, (dice, summary)


def test_stock_sam_weights_load_into_a_model_with_more_classes_than_stock_tokens(tmp_path: Path) -> None:
    stock = SamSegmenter("vit_t", 64, 3)  # four mask tokens, as in SAM and MobileSAM checkpoints
    torch.save(stock.state_dict(), tmp_path / "stock.pt")
    model = SamSegmenter("vit_t", 64, CLASSES)
    load_sam_weights(model, tmp_path / "stock.pt")
    assert torch.equal(model.mask_decoder.mask_tokens.weight[:4], stock.mask_decoder.mask_tokens.weight)
