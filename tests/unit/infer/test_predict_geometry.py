"""Masks land where the input's voxels are: the protocol is replayed as ingest made the training slices, and
predictions go back through the same reorientation and slicing (a stand-in model thresholds each slice, so the
expected mask is known voxel by voxel)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from predict_helpers import Threshold, shared, stand_in, to_uint8_threshold

from medseg.cli import main
from medseg.data.protocol import Protocol
from medseg.infer.inputs import Source, read_scan, to_file_order
from medseg.infer.replay import model_slices

WINDOW = (-160.0, 240.0)


def _predict(model: Path, source: Path, out: Path) -> None:
    assert main(["predict", "--model", str(model), "--input", str(source), "--out", str(out)]) == 0


def test_replayed_slices_are_the_ingested_ones(phantom_raw: Path, ingested_sample: Path) -> None:
    ingest = json.loads((ingested_sample / "ingest.json").read_text())
    protocol = Protocol.from_record(ingest["protocol"], "ingest.json")
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    images = np.load(ingested_sample / "images.npy")
    row = manifest.iloc[0]
    slices = model_slices(read_scan(Source(phantom_raw / row["image_file"], "nifti"), 2**27), protocol)
    case = manifest[manifest["case"] == row["case"]]
    assert np.array_equal(slices[case["slice_index"].to_numpy()], images[case["row"].to_numpy()])


def test_a_nifti_not_in_ras_comes_back_voxel_for_voxel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(0).normal(0, 200, size=(5, 32, 32)).astype(np.float32)
    affine = np.array([[0, 0, -0.9, 30], [0, -0.8, 0, 40], [2.5, 0, 0, -10], [0, 0, 0, 1]], dtype=float)  # S, P, L
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    model = stand_in(monkeypatch, tmp_path, Threshold(32), Protocol("RAS+", 2, 32, WINDOW, None, 2**27))
    _predict(model, tmp_path / "scan.nii.gz", tmp_path / "out")
    mask = nib.load(tmp_path / "out/scan_mask.nii.gz")
    assert np.array_equal(np.asarray(mask.dataobj), to_uint8_threshold(data, WINDOW))
    assert np.array_equal(mask.affine, nib.load(tmp_path / "scan.nii.gz").affine)  # as stored (float32)


def test_file_order_undoes_the_reorientation(tmp_path: Path) -> None:
    flair = next(shared("brats2015/brats_2013_pat0005_1").glob("*Flair*.nii.gz"))
    scan = read_scan(Source(flair, "nifti"), 2**27)
    assert not np.array_equal(scan.to_canonical[:3, :3], np.eye(3))  # LPS on disk: two axes flipped
    assert np.array_equal(to_file_order(scan.voxels, scan.to_canonical), np.asarray(nib.load(flair).dataobj))


def test_a_png_comes_back_pixel_for_pixel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = np.random.default_rng(2).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    model = stand_in(monkeypatch, tmp_path, Threshold(24), Protocol("file", 2, 24, None, None, 2**27))
    _predict(model, tmp_path / "photo.png", tmp_path / "out")
    mask = np.asarray(Image.open(tmp_path / "out/photo_mask.png"))
    assert np.array_equal(mask, to_uint8_threshold(pixels.astype(np.float32).mean(axis=-1), None))


def test_dicom_seg_frames_match_their_source_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import highdicom as hd
    import pydicom

    series = shared("dicom-seg-ct/data/segmentations/ct-3slice")
    model = stand_in(monkeypatch, tmp_path, Threshold(512), Protocol("RAS+", 2, 512, WINDOW, None, 2**27))
    _predict(model, series, tmp_path / "out")
    seg = hd.seg.segread(tmp_path / "out/ct-3slice_seg.dcm")
    sources = [pydicom.dcmread(path) for path in sorted(series.glob("*.dcm"))]
    frames = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    for source, frame in zip(sources, frames, strict=True):
        hu = source.pixel_array * float(source.RescaleSlope) + float(source.RescaleIntercept)
        assert np.array_equal(frame, to_uint8_threshold(hu, WINDOW)), source.filename
