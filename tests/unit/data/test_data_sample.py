"""The synthetic phantom: reproducible bytes, MSD layout, CT-like values, a non-trivial lesion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medseg.data.sample import SYNTHETIC_NOTICE, PhantomSpec, phantom_volume, write_sample

pytest_plugins = ["data_fixtures"]

SMALL_SPEC = PhantomSpec(
    num_patients=3, shape=(24, 24, 6), spacing_mm=(1.5, 1.5, 5.0), noise_hu=25.0, lesion_contrast_hu=35.0
)


def _file_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def _volumes(raw: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, label) arrays of every case listed in dataset.json."""
    meta = json.loads((raw / "dataset.json").read_text())
    return [(_load(raw / e["image"]), _load(raw / e["label"])) for e in meta["training"]]


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    write_sample(tmp_path / "a", SMALL_SPEC, seed=7)
    write_sample(tmp_path / "b", SMALL_SPEC, seed=7)
    first, second = _file_bytes(tmp_path / "a"), _file_bytes(tmp_path / "b")
    assert len(first) == 2 * SMALL_SPEC.num_patients + 3  # + dataset.json, SYNTHETIC.txt, the step marker
    assert first == second


def test_different_seed_gives_different_volumes(tmp_path: Path) -> None:
    write_sample(tmp_path / "a", SMALL_SPEC, seed=7)
    write_sample(tmp_path / "b", SMALL_SPEC, seed=8)
    first, second = _file_bytes(tmp_path / "a"), _file_bytes(tmp_path / "b")
    assert first.keys() == second.keys()
    for name in first:
        if name.endswith(".nii.gz"):
            assert first[name] != second[name], name


def test_from_params_reads_the_sample_section(params_dict: dict[str, Any]) -> None:
    spec = PhantomSpec.from_params(params_dict["sample"])
    assert spec.num_patients == 6
    assert spec.shape == (32, 32, 8)
    assert spec.noise_hu == float(params_dict["sample"]["noise_hu"])
    assert spec.lesion_contrast_hu == float(params_dict["sample"]["lesion_contrast_hu"])


def test_msd_layout(phantom_raw: Path) -> None:
    meta = json.loads((phantom_raw / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "lesion"}
    assert "synthetic" in meta["description"].lower()
    assert meta["numTraining"] == len(meta["training"]) == 6
    images = sorted(p.name for p in (phantom_raw / "imagesTr").iterdir())
    labels = sorted(p.name for p in (phantom_raw / "labelsTr").iterdir())
    assert images == labels == [f"phantom_{i:03d}.nii.gz" for i in range(1, 7)]
    for entry in meta["training"]:
        assert (phantom_raw / entry["image"]).is_file()
        assert (phantom_raw / entry["label"]).is_file()
        assert Path(entry["image"]).name == Path(entry["label"]).name
    assert SYNTHETIC_NOTICE in (phantom_raw / "SYNTHETIC.txt").read_text()


def test_header_geometry_is_lps_with_the_spacing(phantom_raw: Path) -> None:
    image = nib.load(str(phantom_raw / "imagesTr" / "phantom_001.nii.gz"))
    assert image.shape == (32, 32, 8)
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    assert np.allclose(image.header.get_zooms(), (1.5, 1.5, 5.0))


def test_hounsfield_ranges(phantom_raw: Path) -> None:
    for image, label in _volumes(phantom_raw):
        assert image.dtype == np.int16
        corners = np.concatenate([image[:3, :3].ravel(), image[-3:, -3:].ravel()])
        assert abs(np.median(corners) + 1000) < 30, "air should be about -1000 HU"
        body = image > -500
        tissue = image[body & (label == 0)]
        assert abs(np.median(tissue) - 40) < 15, "soft tissue should be near 40 HU"
        assert image.max() > 500, "bone should be bright"
        assert image.min() >= -1024


def test_label_only_inside_body(phantom_raw: Path) -> None:
    for image, label in _volumes(phantom_raw):
        assert set(np.unique(label).tolist()) == {0, 1}
        assert image[label > 0].min() > -200, "labeled voxels must be tissue, not air or fat"


def test_each_patient_has_labeled_and_empty_slices(phantom_raw: Path) -> None:
    for _, label in _volumes(phantom_raw):
        labeled = label.reshape(-1, label.shape[2]).any(axis=0)
        assert labeled.any()
        assert not labeled.all()


def test_phantom_volume_is_deterministic_for_a_generator_state() -> None:
    first = phantom_volume(SMALL_SPEC, np.random.default_rng(3))
    second = phantom_volume(SMALL_SPEC, np.random.default_rng(3))
    other = phantom_volume(SMALL_SPEC, np.random.default_rng(4))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])


def test_failed_write_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medseg.data.sample as sample

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(sample, "_write_nifti_gz", broken)
    with pytest.raises(OSError):
        write_sample(tmp_path / "raw", SMALL_SPEC, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _best_threshold_dice(images: np.ndarray, masks: np.ndarray) -> float:
    """The best Dice of any global threshold (either polarity) over all slices."""
    truth = masks > 0
    counts = np.bincount(images.ravel(), minlength=256)
    hits = np.bincount(images[truth].ravel(), minlength=256)
    above_total, above_hits = np.cumsum(counts[::-1])[::-1], np.cumsum(hits[::-1])[::-1]
    positives = truth.sum()
    best = 0.0
    for predicted, overlap in (
        (above_total, above_hits),
        (counts.sum() - above_total, positives - above_hits),
    ):
        dice = 2 * overlap / np.maximum(predicted + positives, 1)
        best = max(best, float(dice.max()))
    return best


def test_lesion_is_not_thresholdable(ingested_sample: Path) -> None:
    images = np.load(ingested_sample / "images.npy")
    masks = np.load(ingested_sample / "masks.npy")
    truth = masks > 0
    body = images > 0
    assert images[truth].mean() > images[body & ~truth].mean(), "the lesion should be brighter on average"
    assert _best_threshold_dice(images, masks) < 0.8
