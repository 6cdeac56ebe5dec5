"""The ``dicom_series`` adapter: DICOM series with DICOM-SEG, PNG-stack, label-volume and
ground-truth-series masks, on the dcmqi CT sample and on miniature CHAOS, Duke and ProstateX layouts."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest

from helpers import tiny_params
from medseg.data.adapters import dicom_series
from medseg.data.ingest import ingest_dataset
from medseg.data.registry import get_spec
from medseg.errors import MedsegError

# dicom_fixtures' helpers are imported inside the functions, once pytest has loaded it as a plugin
pytest_plugins = ["data_fixtures", "dicom_fixtures"]

SEG_SAMPLE = Path(__file__).resolve().parents[4] / "shared/data/dicom-seg-ct/data/segmentations"
TEST_REGISTRY = Path(__file__).parent / "registry"
NoOutput = Callable[[Path], None]


def _params(**overrides: Any) -> dict[str, Any]:
    return {**tiny_params()["ingest"], "extra_registries": [str(TEST_REGISTRY)], "image_size": 16,
            "intensity_window": None, "percentile_clip": None, **overrides}


def _load_all(alias: str, raw: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every case of a dataset, loaded: case id -> (image, mask)."""
    spec = get_spec(alias, [TEST_REGISTRY])
    return {c.case_id: dicom_series.load(c, spec, 2**28) for c in dicom_series.discover(raw, spec)}


def _assert_aligned(loaded: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Each mask equals the classes encoded in its own image, voxel by voxel."""
    from dicom_fixtures import classes_of

    for case, (image, mask) in loaded.items():
        assert mask.dtype == np.uint8 and mask.shape == image.shape, case
        assert mask.any(), case
        np.testing.assert_array_equal(mask, classes_of(image), err_msg=case)


def _ingest(alias: str, raw: Path, out: Path, **overrides: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    summary = ingest_dataset(alias, raw, out, _params(**overrides), seed=0)
    return summary, pd.read_parquet(out / "manifest.parquet")


def _assert_ingested(alias: str, raw: Path, out: Path, patients: set[str], classes: set[int]) -> pd.DataFrame:
    """Three patients, one split each, every non-empty phantom slice kept, masks on the bright voxels."""
    from dicom_fixtures import SLICES

    summary, manifest = _ingest(alias, raw, out)
    images, masks = np.load(out / "images.npy"), np.load(out / "masks.npy")
    assert summary["num_slices"] == len(manifest) == len(patients) * (SLICES - 1)
    assert set(manifest["patient"]) == patients
    assert (manifest.groupby("patient")["split"].nunique() == 1).all()
    assert sum(summary["patients_per_split"].values()) == len(patients)
    assert set(np.unique(masks).tolist()) == {0, *classes}
    np.testing.assert_array_equal(images > 0, masks > 0)
    return manifest


def _sample() -> Path:
    if not SEG_SAMPLE.is_dir():
        pytest.skip(f"real sample {SEG_SAMPLE} is absent")
    return SEG_SAMPLE


def test_dicom_seg_sample_frames_land_on_their_slices() -> None:
    raw = _sample()
    (_, seg_mask), = _load_all("dicomseg_ct", raw).values()
    (_, nrrd_mask), = _load_all("dicomseg_ct_nrrd", raw).values()
    counts = [int(seg_mask[..., z].sum()) for z in range(seg_mask.shape[2])]
    assert counts == [int(nrrd_mask[..., z].sum()) for z in range(3)]
    np.testing.assert_array_equal(seg_mask, nrrd_mask)
    heights = {pydicom.dcmread(f).SOPInstanceUID: float(pydicom.dcmread(f).ImagePositionPatient[2])
               for f in (raw / "ct-3slice").iterdir()}
    seg = pydicom.dcmread(raw / "liver.dcm")
    for frame, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence, strict=True):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        z = sorted(heights.values()).index(heights[uid])  # RAS+ slices run inferior to superior
        assert counts[z] == int(frame.sum()) > 0


def test_dicom_seg_sample_ingests(tmp_path: Path) -> None:
    raw = Path(shutil.copytree(_sample(), tmp_path / "raw"))
    summary, manifest = _ingest("dicomseg_ct", raw, tmp_path / "out", image_size=64)
    masks = np.load(tmp_path / "out" / "masks.npy")
    assert summary["num_slices"] == len(manifest) == 3 and masks.shape == (3, 64, 64)
    assert manifest["slice_index"].tolist() == [0, 1, 2]
    assert set(manifest["labels_present"]) == {"0,1"}
    assert manifest["label_file"].eq("liver.dcm").all() and manifest["image_file"].eq("ct-3slice").all()


def test_chaos_png_stack(chaos_raw: Path, tmp_path: Path) -> None:
    loaded = _load_all("mri_chaos", chaos_raw)
    assert sorted(loaded) == [f"Train_Sets__MR__{p}__T2SPIR__DICOM_anon" for p in (1, 2, 5)]
    _assert_aligned(loaded)
    manifest = _assert_ingested("mri_chaos", chaos_raw, tmp_path / "out", {"1", "2", "5"}, {1, 2, 3, 4})
    assert manifest["label_file"].str.endswith("T2SPIR/Ground").all()


def test_duke_pre_contrast_series_with_cropped_seg_nrrd(duke_raw: Path, tmp_path: Path) -> None:
    loaded = _load_all("mri_breast_duke", duke_raw)
    assert len(loaded) == 3 and all("ax dyn pre" in case for case in loaded), sorted(loaded)
    _assert_aligned(loaded)
    patients = {f"Breast_MRI_00{p}" for p in (1, 2, 3)}
    manifest = _assert_ingested("mri_breast_duke", duke_raw, tmp_path / "out", patients, {1})
    assert manifest["label_file"].str.endswith("_Breast.seg.nrrd").all()


def test_prostatex_listed_t2_series_with_nifti_masks(prostatex_raw: Path, tmp_path: Path) -> None:
    loaded = _load_all("mri_prostatex", prostatex_raw)
    assert sorted(case.rsplit("__", 1)[1][:2] for case in loaded) == ["4.", "4.", "5."]
    _assert_aligned(loaded)
    patients = {f"ProstateX-000{p}" for p in (0, 1, 2)}
    _assert_ingested("mri_prostatex", prostatex_raw, tmp_path / "out", patients, {1})


def test_dicom_seg_segments_by_reference_and_by_position(seg_raw: Path, tmp_path: Path) -> None:
    loaded = _load_all("dicomseg_mini", seg_raw)
    _assert_aligned(loaded)
    _assert_ingested("dicomseg_mini", seg_raw, tmp_path / "out", {"P1", "P2", "P3"}, {1, 2})
    seg_path = seg_raw / "P2/SEG/seg.dcm"
    seg = pydicom.dcmread(seg_path)
    for item in seg.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    seg.save_as(seg_path)
    by_position = _load_all("dicomseg_mini", seg_raw)["P2__MR"][1]
    np.testing.assert_array_equal(by_position, loaded["P2__MR"][1])


def test_dicom_ground_truth_series(gt_raw: Path, tmp_path: Path) -> None:
    _assert_aligned(_load_all("dicom_gt_mini", gt_raw))
    _assert_ingested("dicom_gt_mini", gt_raw, tmp_path / "out", {"P1", "P2", "P3"}, {1, 2})


def _assert_fails(alias: str, raw: Path, out: Path, path: Path, words: str, no_output: NoOutput) -> None:
    with pytest.raises(MedsegError) as err:
        ingest_dataset(alias, raw, out, _params(), seed=0)
    assert err.value.path is not None and Path(err.value.path).resolve() == path.resolve(), str(err.value)
    assert words in err.value.problem
    no_output(out)


def test_dicom_file_without_pixel_data(chaos_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    path = chaos_raw / "Train_Sets/MR/2/T2SPIR/DICOM_anon/IMG-0002-00003.dcm"
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    _assert_fails("mri_chaos", chaos_raw, tmp_path / "out", path, "no pixel data", assert_no_output)


def test_seg_referencing_an_unknown_instance(seg_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    path = seg_raw / "P3/SEG/seg.dcm"
    seg = pydicom.dcmread(path)
    source = seg.PerFrameFunctionalGroupsSequence[1].DerivationImageSequence[0].SourceImageSequence[0]
    source.ReferencedSOPInstanceUID = pydicom.uid.generate_uid()
    seg.save_as(path)
    _assert_fails("dicomseg_mini", seg_raw, tmp_path / "out", path, "not in the image series", assert_no_output)


def test_png_stack_with_a_missing_png(chaos_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    ground = chaos_raw / "Train_Sets/MR/5/T2SPIR/Ground"
    (ground / "IMG-0002-00002.png").unlink()
    _assert_fails("mri_chaos", chaos_raw, tmp_path / "out", ground, "3 PNG masks for 4 DICOM slices",
                  assert_no_output)


def test_png_of_another_size(chaos_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    from dicom_fixtures import write_png

    path = chaos_raw / "Train_Sets/MR/1/T2SPIR/Ground/IMG-0002-00002.png"
    write_png(path, np.zeros((8, 8)))
    _assert_fails("mri_chaos", chaos_raw, tmp_path / "out", path, "differs from its DICOM slice", assert_no_output)


def test_mask_outside_the_image(duke_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    from dicom_fixtures import write_label_volume

    series = next((duke_raw / "manifest-1654812109500/Duke-Breast-Cancer-MRI/Breast_MRI_002").glob("*/3.*"))
    path = duke_raw / "Segmentation_Masks_NRRD/Breast_MRI_002/Segmentation_Breast_MRI_002_Breast.seg.nrrd"
    write_label_volume(series, path, shift=(0.0, 0.0, 500.0))
    _assert_fails("mri_breast_duke", duke_raw, tmp_path / "out", path, "does not overlap", assert_no_output)


def test_missing_mask(prostatex_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    (prostatex_raw / "PROSTATEx_masks/Files/prostate/mask_prostate/ProstateX-0001.nii.gz").unlink()
    series = next((prostatex_raw / "PROSTATEx/ProstateX-0001").glob("*/5.*"))
    _assert_fails("mri_prostatex", prostatex_raw, tmp_path / "out", series, "series has no mask", assert_no_output)


def test_ground_truth_on_another_grid(gt_raw: Path, tmp_path: Path, assert_no_output: NoOutput) -> None:
    from dicom_fixtures import write_series

    truth = gt_raw / "P2/ground_truth"
    shutil.rmtree(truth)
    write_series(truth, np.ones((4, 16, 16), dtype=np.int16), patient="P2", spacing=2.0)
    _assert_fails("dicom_gt_mini", gt_raw, tmp_path / "out", truth, "differs from its image", assert_no_output)
