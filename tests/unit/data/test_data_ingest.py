"""Ingestion of an MSD-layout dataset into slice arrays and a manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from medseg.data.ingest import ingest_dataset
from medseg.data.slices import SliceProtocol, to_uint8, volume_to_slices
from medseg.data.split import SPLITS, assign_splits

pytest_plugins = ["data_fixtures"]

MANIFEST_COLUMNS = {
    "row", "dataset", "patient", "case", "image_file", "label_file", "slice_index", "split",
    "height", "width", "intensity_mean", "intensity_std", "mask_fraction", "labels_present",
}
X_FLIP = np.diag([-1.0, 1.0, 1.0, 1.0])


def _canonical_label(label_path: Path) -> np.ndarray:
    """A label volume in RAS+ orientation."""
    return np.asarray(nib.as_closest_canonical(nib.load(str(label_path))).dataobj)


def _labeled_slices(label: np.ndarray) -> list[int]:
    return [z for z in range(label.shape[2]) if label[..., z].any()]


def _manifest(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest.parquet")


def _protocol_params(params_dict: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Ingest params for the hand-made datasets (registered as ``hand`` in the tests' registry)."""
    return {**params_dict["ingest"], "extra_registries": [str(Path(__file__).parent / "registry")], **overrides}


def test_slice_counts_match_labeled_slices(phantom_raw: Path, ingested_sample: Path) -> None:
    manifest = _manifest(ingested_sample)
    for label_path in sorted((phantom_raw / "labelsTr").iterdir()):
        case = label_path.name.removesuffix(".nii.gz")
        expected = _labeled_slices(_canonical_label(label_path))
        got = manifest.loc[manifest["case"] == case, "slice_index"].tolist()
        assert got == expected, case
    assert np.load(ingested_sample / "images.npy").shape[0] == len(manifest)


def test_arrays_are_uint8_square_and_masks_use_label_values(ingested_sample: Path) -> None:
    images = np.load(ingested_sample / "images.npy")
    masks = np.load(ingested_sample / "masks.npy")
    assert images.dtype == masks.dtype == np.uint8
    assert images.ndim == 3 and images.shape[1:] == (64, 64)
    assert masks.shape == images.shape
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert masks.reshape(len(masks), -1).any(axis=1).all(), "empty slices should have been dropped"
    assert images.max() > 200 and images.min() == 0, "slices should use the 0-255 range"


def test_manifest_has_one_row_per_slice(ingested_sample: Path) -> None:
    manifest = _manifest(ingested_sample)
    images = np.load(ingested_sample / "images.npy")
    masks = np.load(ingested_sample / "masks.npy")
    assert set(manifest.columns) >= MANIFEST_COLUMNS
    assert manifest["row"].tolist() == list(range(len(images)))
    assert (manifest["dataset"] == "sample").all()
    assert (manifest["height"] == 64).all() and (manifest["width"] == 64).all()
    assert np.allclose(manifest["intensity_mean"], images.reshape(len(images), -1).mean(axis=1))
    assert np.allclose(manifest["mask_fraction"], (masks > 0).reshape(len(masks), -1).mean(axis=1))
    assert manifest["image_file"].str.startswith("imagesTr/").all()
    assert manifest["label_file"].str.startswith("labelsTr/").all()


def test_splits_are_patient_level_and_seeded(ingested_sample: Path, params_dict: dict[str, Any]) -> None:
    manifest = _manifest(ingested_sample)
    assert (manifest.groupby("patient")["split"].nunique() == 1).all()
    assert set(manifest["split"]) == set(SPLITS)
    expected = assign_splits(
        sorted(manifest["patient"].unique()), tuple(params_dict["ingest"]["split_fractions"]),
        int(params_dict["seed"]),
    )
    assert manifest["patient"].map(expected).tolist() == manifest["split"].tolist()


def test_summary_matches_manifest(ingested_sample: Path) -> None:
    summary = json.loads((ingested_sample / "ingest.json").read_text())
    manifest = _manifest(ingested_sample)
    assert summary["synthetic"] is True
    assert summary["grouping"] == "patient"
    assert summary["image_size"] == 64
    assert summary["labels"] == {"0": "background", "1": "lesion"}
    assert summary["num_slices"] == len(manifest)
    assert summary["slices_per_split"] == manifest["split"].value_counts().reindex(SPLITS).to_dict()
    assert sum(summary["patients_per_split"].values()) == 6


def test_keeping_empty_slices(phantom_raw: Path, tmp_path: Path, params_dict: dict[str, Any]) -> None:
    params = _protocol_params(params_dict, drop_empty_slices=False)
    summary = ingest_dataset("sample", phantom_raw, tmp_path / "out", params, int(params_dict["seed"]))
    masks = np.load(tmp_path / "out" / "masks.npy")
    manifest = _manifest(tmp_path / "out")
    assert summary["num_slices"] == len(masks) == 6 * 8
    per_case = manifest.groupby("case")["slice_index"].apply(list).to_dict()
    assert per_case == {f"phantom_{i:03d}": list(range(8)) for i in range(1, 7)}
    empty = ~masks.reshape(len(masks), -1).any(axis=1)
    assert 0 < empty.sum() < len(masks)


def test_same_input_gives_same_arrays(
    phantom_raw: Path, ingested_sample: Path, tmp_path: Path, params_dict: dict[str, Any]
) -> None:
    ingest_dataset("sample", phantom_raw, tmp_path / "again", params_dict["ingest"], int(params_dict["seed"]))
    for name in ("images.npy", "masks.npy"):
        assert (tmp_path / "again" / name).read_bytes() == (ingested_sample / name).read_bytes()


def test_existing_output_is_replaced(
    phantom_raw: Path, tmp_path: Path, params_dict: dict[str, Any]
) -> None:
    out = tmp_path / "out"
    ingest_dataset("sample", phantom_raw, out, params_dict["ingest"], int(params_dict["seed"]))
    (out / "stale.txt").write_text("old")  # inside an earlier ingest output (it has the marker)
    ingest_dataset("sample", phantom_raw, out, params_dict["ingest"], int(params_dict["seed"]))
    assert sorted(p.name for p in out.iterdir()) == [
        ".medseg-step", "images.npy", "ingest.json", "manifest.parquet", "masks.npy",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _marker_pair() -> tuple[np.ndarray, np.ndarray]:
    """An 8x8x2 image ramp and an L-shaped label that changes under an x flip."""
    image = np.tile(np.arange(8, dtype=np.int16)[:, None, None] * 100, (1, 8, 2))
    label = np.zeros((8, 8, 2), dtype=np.uint8)
    label[0:2, 0:5, :] = 1
    label[0:4, 0:2, :] = 1
    return image, label


def test_canonical_reorientation_is_applied(
    tmp_path: Path, write_msd: Callable[..., Path], params_dict: dict[str, Any]
) -> None:
    image, label = _marker_pair()
    raw = write_msd(tmp_path / "raw", [("case_001", image, label)], affine=X_FLIP)
    params = _protocol_params(params_dict, image_size=8, drop_empty_slices=False, intensity_window=None)
    ingest_dataset("hand", raw, tmp_path / "out", params, seed=0)
    masks = np.load(tmp_path / "out" / "masks.npy")
    images = np.load(tmp_path / "out" / "images.npy")
    canonical = _canonical_label(raw / "labelsTr" / "case_001.nii.gz")
    assert not np.array_equal(canonical, label), "the x flip should change the array"
    for z in range(2):
        assert np.array_equal(masks[z], canonical[..., z])
        assert not np.array_equal(masks[z], label[..., z])
    assert images[0, 0, 0] == 255 and images[0, -1, 0] == 0, "the intensity ramp should be reversed"


def test_intensity_window_clips_before_scaling(
    tmp_path: Path, write_msd: Callable[..., Path], params_dict: dict[str, Any]
) -> None:
    image = np.full((4, 4, 1), 40, dtype=np.int16)
    image[0] = -1000
    image[1] = 700
    image[2, 0] = -160
    image[2, 1] = 240
    label = np.ones((4, 4, 1), dtype=np.uint8)
    raw = write_msd(tmp_path / "raw", [("case_001", image, label)])
    windowed = _protocol_params(params_dict, image_size=4, intensity_window=[-160, 240])
    ingest_dataset("hand", raw, tmp_path / "windowed", windowed, seed=0)
    ingest_dataset("hand", raw, tmp_path / "full", {**windowed, "intensity_window": None}, seed=0)
    clipped = np.load(tmp_path / "windowed" / "images.npy")[0]
    assert (clipped[0] == 0).all() and (clipped[1] == 255).all()
    assert clipped[2, 0] == 0 and clipped[2, 1] == 255
    assert abs(int(clipped[3, 0]) - 128) <= 1, "40 HU is mid-window"
    full = np.load(tmp_path / "full" / "images.npy")[0]
    assert full[0, 0] == 0 and full[1, 0] == 255
    assert abs(int(full[3, 0]) - round(1040 / 1700 * 255)) <= 1


def test_to_uint8_window_and_minmax() -> None:
    volume = np.array([-1000.0, -160.0, 40.0, 240.0, 700.0], dtype=np.float32)
    windowed = to_uint8(volume, (-160.0, 240.0))
    assert windowed.dtype == np.uint8
    assert windowed[[0, 1, 3, 4]].tolist() == [0, 0, 255, 255]
    assert abs(int(windowed[2]) - 128) <= 1
    assert to_uint8(volume, None)[[0, 4]].tolist() == [0, 255]


def test_volume_to_slices_resizes_and_keeps_labels() -> None:
    image = np.random.default_rng(0).normal(size=(6, 6, 3)).astype(np.float32)
    label = np.zeros((6, 6, 3), dtype=np.uint8)
    label[1:4, 2:5, 1] = 2
    protocol = SliceProtocol(image_size=12, slice_axis=2, intensity_window=None, drop_empty_slices=True)
    images, masks, indices = volume_to_slices(image, label, protocol)
    assert indices.tolist() == [1]
    assert images.shape == masks.shape == (1, 12, 12)
    assert images.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 2}
    assert (masks[0] == 2).sum() == 4 * 9, "nearest resize doubles each side of the 3x3 block"


def test_summary_counts_slices_kept_and_dropped_per_case(phantom_raw: Path, ingested_sample: Path) -> None:
    summary = json.loads((ingested_sample / "ingest.json").read_text())
    counts, manifest = summary["slice_counts"], _manifest(ingested_sample)
    assert counts["drop_rule"] == "empty mask" and summary["orientation"] == "RAS+"
    assert {case: c["kept"] for case, c in counts["per_case"].items()} == manifest["case"].value_counts().to_dict()
    assert all(c["kept"] + c["dropped"] == 8 for c in counts["per_case"].values())  # 8 axial slices per case
    assert counts["dropped"] == 6 * 8 - len(manifest) > 0 and counts["cases_without_slices"] == []


def test_a_case_left_without_slices_is_named(tmp_path: Path, write_msd: Callable[..., Path],
                                             params_dict: dict[str, Any], capsys: Any) -> None:
    image = np.random.default_rng(0).normal(size=(8, 8, 3)).astype(np.float32)
    label = np.zeros((8, 8, 3), dtype=np.uint8)
    label[2:5, 2:5, 1] = 1
    cases = [("case_001", image, label), ("case_002", image, np.zeros_like(label))]
    raw = write_msd(tmp_path / "raw", cases)
    summary = ingest_dataset("hand", raw, tmp_path / "out", _protocol_params(params_dict, image_size=8), seed=0)
    counts = summary["slice_counts"]
    assert counts["per_case"] == {"case_001": {"kept": 1, "dropped": 2}, "case_002": {"kept": 0, "dropped": 3}}
    assert counts["cases_without_slices"] == ["case_002"] and set(_manifest(tmp_path / "out")["case"]) == {"case_001"}
    assert "1 case(s) had no slice left: case_002" in capsys.readouterr().out


def test_2d_images_are_stored_as_the_file_shows_them(tmp_path: Path, params_dict: dict[str, Any]) -> None:
    from layouts import us_breast

    us_breast(tmp_path / "raw")
    params = {**params_dict["ingest"], "image_size": 16, "workers": 1}
    summary = ingest_dataset("us_breast", tmp_path / "raw", tmp_path / "out", params, seed=0)
    masks = np.load(tmp_path / "out" / "masks.npy")
    assert summary["orientation"] == "file"
    assert masks[0, 4:10, 4:10].all() and not masks[0, :4].any()  # rows 4-9 of the PNG are rows 4-9 here
    assert summary["slice_counts"]["cases_without_slices"] == [c for c in summary["slice_counts"]["per_case"]
                                                                if "normal" in c] != []
    assert summary["protocol"]["orientation"] == "file" and summary["protocol"]["intensity"] == "min_max"


def test_summary_records_the_effective_protocol(ingested_sample: Path, params_dict: dict[str, Any]) -> None:
    """ingest.json says how images became slices, as exported models record it and predict replays it."""
    from medseg.data.protocol import Protocol

    record = json.loads((ingested_sample / "ingest.json").read_text())["protocol"]
    assert record == {"version": 1, "orientation": "RAS+", "slice_axis": 2, "image_size": 64, "intensity": "window",
                      "intensity_window": [-160.0, 240.0], "percentile_clip": None,
                      "resize": {"image": "bilinear", "mask": "nearest"}, "colour": "mean of RGB", "channels": 3,
                      "max_voxels": params_dict["ingest"]["max_voxels"]}
    assert Protocol.from_record(record, "ingest.json").to_record() == record


def test_only_the_intensity_rule_in_effect_is_recorded() -> None:
    from medseg.data.protocol import Protocol

    both = Protocol("RAS+", 2, 64, (0.0, 1.0), (1.0, 99.0), 100).to_record()
    assert (both["intensity"], both["intensity_window"], both["percentile_clip"]) == ("window", [0.0, 1.0], None)
    clip = Protocol("RAS+", 0, 64, None, (0.5, 99.5), 100).to_record()
    assert (clip["intensity"], clip["percentile_clip"]) == ("percentile_clip", [0.5, 99.5])
