"""The torch dataset over ingested slices, and the atomic output helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medseg.atomic import atomic_dir, atomic_file, write_json
from medseg.data.slice_dataset import SliceDataset, open_arrays
from medseg.data.split import SPLITS
from medseg.errors import MedsegError

pytest_plugins = ["data_fixtures"]


@pytest.mark.parametrize("split", SPLITS)
def test_items_of_one_split(ingested_sample: Path, split: str) -> None:
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    rows = manifest.loc[manifest["split"] == split, "row"].tolist()
    images = np.load(ingested_sample / "images.npy")
    masks = np.load(ingested_sample / "masks.npy")
    dataset = SliceDataset(ingested_sample, split)
    assert len(dataset) == len(rows) > 0
    for index, row in enumerate(rows):
        image, mask = dataset[index]
        assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
        assert mask.dtype == torch.int64 and mask.shape == (64, 64)
        assert float(image.min()) >= 0.0 and float(image.max()) <= 255.0
        assert all(torch.equal(image[c], torch.from_numpy(images[row]).float()) for c in range(3))
        assert torch.equal(mask, torch.from_numpy(masks[row]).long())


def test_splits_are_disjoint_and_cover_all_slices(ingested_sample: Path) -> None:
    datasets = [SliceDataset(ingested_sample, split) for split in SPLITS]
    rows = [set(d.rows.tolist()) for d in datasets]
    total = len(np.load(ingested_sample / "masks.npy"))
    assert sum(len(r) for r in rows) == len(set().union(*rows)) == total
    assert len(SliceDataset(ingested_sample, "holdout")) == 0


def test_items_stay_in_0_255_after_float_conversion(ingested_sample: Path) -> None:
    image, _ = SliceDataset(ingested_sample, "train")[0]
    assert float(image.max()) > 1.0, "images are not rescaled to 0-1"


def test_open_arrays_refuses_mismatched_shapes(ingested_copy: Path) -> None:
    masks = np.load(ingested_copy / "masks.npy")
    np.save(ingested_copy / "masks.npy", masks[:-1])
    with pytest.raises(MedsegError, match="differs"):
        open_arrays(ingested_copy)


def test_open_arrays_names_a_corrupt_array(ingested_copy: Path) -> None:
    (ingested_copy / "images.npy").write_bytes(b"not an array")
    with pytest.raises(MedsegError) as caught:
        open_arrays(ingested_copy)
    assert caught.value.path == str(ingested_copy / "images.npy")


def test_atomic_dir_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("boom")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file_and_write_json(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "result.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert target.read_text().endswith("\n")
    with pytest.raises(ValueError), atomic_file(target) as tmp:
        tmp.write_text("partial")
        raise ValueError("boom")
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
