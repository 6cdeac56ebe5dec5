"""A DICOM-SEG written by `medseg predict` is read back by ingestion (the ``dicom_series`` adapter, highdicom
underneath) as the very mask predict made, voxel for voxel: on a synthetic MR series stored in another
orientation and order (always runs) and on the real CT sample (skipped when absent). A stand-in model
thresholds each slice, so the expected mask is known from the image ingestion reads."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from predict_helpers import Threshold, shared, stand_in, to_uint8_threshold

from medseg.cli import main
from medseg.data.adapters import dicom_series
from medseg.data.protocol import Protocol
from medseg.data.registry import get_spec

DATA_TESTS = Path(__file__).resolve().parents[1] / "data"  # the DICOM fixtures and test registry live there
if str(DATA_TESTS) not in sys.path:
    sys.path.insert(0, str(DATA_TESTS))

CT = "dicom-seg-ct/data/segmentations/ct-3slice"
CT_WINDOW = (-160.0, 240.0)


def _predict_seg(model: Path, series: Path, out: Path) -> Path:
    assert main(["predict", "--model", str(model), "--input", str(series), "--out", str(out)]) == 0
    (seg,) = out.glob("*_seg.dcm")
    return seg


def _ingested(alias: str, raw: Path) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask) of the dataset's one case, as ingestion loads them."""
    spec = get_spec(alias, [DATA_TESTS / "registry"])
    (case,) = dicom_series.discover(raw, spec)
    return dicom_series.load(case, spec, 2**28)


def test_a_predicted_seg_of_a_transposed_series_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_fixtures import COLS, TRANSPOSED, classes_of, phantom, write_series

    window = (0.0, 400.0)  # phantom voxels 10, 110, 210, 310: classes 2 and 3 lie above the threshold
    write_series(tmp_path / "raw/P1/MR", 10 + 100 * phantom(1, 3).astype(np.int16), patient="P1",
                 orientation=TRANSPOSED, descending=True)
    model = stand_in(monkeypatch, tmp_path, Threshold(COLS), Protocol("RAS+", 2, COLS, window, None, 2**27))
    seg = _predict_seg(model, tmp_path / "raw/P1/MR", tmp_path / "out")
    (tmp_path / "raw/P1/SEG").mkdir()
    shutil.copy(seg, tmp_path / "raw/P1/SEG/seg.dcm")
    image, mask = _ingested("dicomseg_mini", tmp_path / "raw")
    expected = (classes_of(image) >= 2).astype(np.uint8)
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask, to_uint8_threshold(image, window))


def test_a_predicted_seg_of_the_ct_sample_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(shared(CT), raw / "ct-3slice")
    model = stand_in(monkeypatch, tmp_path, Threshold(512), Protocol("RAS+", 2, 512, CT_WINDOW, None, 2**27))
    shutil.copy(_predict_seg(model, raw / "ct-3slice", tmp_path / "out"), raw / "liver.dcm")
    image, mask = _ingested("dicomseg_ct", raw)
    expected = to_uint8_threshold(image, CT_WINDOW)
    assert image.shape == (512, 512, 3) and 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(mask, expected)
