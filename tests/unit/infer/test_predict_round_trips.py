"""`medseg predict` on the real samples: BraTS NIfTI -> NIfTI, a CT DICOM series -> DICOM-SEG, a BUSI PNG ->
PNG mask, each in the input's own geometry, labelled with the model that produced it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from predict_helpers import shared

from medseg.cli import main

CT = "dicom-seg-ct/data/segmentations/ct-3slice"


def _summary(out: Path) -> dict:
    return json.loads((out / "predict.json").read_text())


def test_brats_nifti_gives_a_nifti_with_the_inputs_geometry(unet_model: Path, tmp_path: Path) -> None:
    flair = next(shared("brats2015/brats_2013_pat0005_1").glob("*Flair*.nii.gz"))
    out = tmp_path / "out"
    assert main(["predict", "--model", str(unet_model), "--input", str(flair), "--out", str(out)]) == 0
    source, mask = nib.load(flair), nib.load(out / "Flair_subtrMeanDivStd_mask.nii.gz")
    assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
    assert np.array_equal(mask.affine, source.affine)
    for form in ("get_qform", "get_sform"):
        (ours, our_code), (theirs, their_code) = (getattr(i.header, form)(coded=True) for i in (mask, source))
        assert our_code == their_code and (ours is None) == (theirs is None)
        assert ours is None or np.allclose(ours, theirs)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    assert mask.header["descrip"].tobytes().startswith(b"SYNTHETIC medseg unet automated sample")
    summary = _summary(out)
    assert summary["outputs"][0]["shape"] == [240, 240, 155] and summary["outputs"][0]["slices"] == 155
    assert summary["model"]["strategy"] == "unet" and summary["protocol"]["source"] == "model"
    assert summary["protocol"]["intensity"] == "min_max"


def test_ct_series_gives_a_dicom_seg_referencing_it(sam_model: Path, tmp_path: Path) -> None:
    import highdicom as hd
    import pydicom

    series = shared(CT)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(sam_model), "--input", str(series), "--out", str(out)]) == 0
    seg = hd.seg.segread(out / "ct-3slice_seg.dcm")
    sources = [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(series.glob("*.dcm"))]
    first = sources[0]
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (first.StudyInstanceUID, first.FrameOfReferenceUID)
    assert (seg.Rows, seg.Columns) == (first.Rows, first.Columns)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == {s.SOPInstanceUID for s in sources}
    positions = {tuple(round(float(v), 3) for v in item.PlanePositionSequence[0].ImagePositionPatient)
                 for item in seg.PerFrameFunctionalGroupsSequence}
    assert positions == {tuple(round(float(v), 3) for v in s.ImagePositionPatient) for s in sources}
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["lesion"]  # the model's class names, background aside
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "medseg vit_t_dec_vanilla"
    assert seg.SeriesDescription.startswith("RANDOM-INIT SYNTHETIC medseg vit_t_dec_vanilla")
    pixels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    assert pixels.shape == (3, 512, 512)
    summary = _summary(out)
    assert summary["protocol"]["intensity_window"] == [-160, 240] and summary["protocol"]["source"] == "model"
    assert summary["model"]["random_init"] is True and summary["model"]["synthetic_data"] is True
    assert len(summary["warnings"]) == 2 and summary["labels"] == {"0": "background", "1": "lesion"}


def test_busi_png_gives_a_png_mask_of_the_original_size(sam_model: Path, tmp_path: Path) -> None:
    image = shared("busi/Dataset_BUSI_with_GT/benign/benign (1).png")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(sam_model), "--input", str(image), "--out", str(out)]) == 0
    mask = Image.open(out / "benign (1)_mask.png")
    assert mask.size == Image.open(image).size and mask.mode == "L"
    assert mask.text["Description"].startswith("medseg vit_t_dec_vanilla (automated, init sam) trained on sample")
    assert set(np.unique(np.asarray(mask))) <= {0, 1}
    assert _summary(out)["outputs"][0]["kind"] == "2-D image"


def test_a_folder_of_images_and_a_rerun_over_the_earlier_output(unet_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a.png", (40, 30)), ("b.jpg", (20, 50))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    for _ in range(2):  # the second run replaces the first one's output
        assert main(["predict", "--model", str(unet_model), "--input", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".medseg-step", "a_mask.png", "b_mask.png", "predict.json"]
    assert Image.open(out / "a_mask.png").size == (30, 40) and Image.open(out / "b_mask.png").size == (50, 20)


def test_mha_and_nrrd_come_back_in_their_own_format_and_grid(unet_model: Path, tmp_path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.random.default_rng(1).normal(size=(6, 20, 24)).astype(np.float32))
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((10.0, -20.0, 5.0))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))  # not RAS+: axes swapped, z flipped
    for suffix in (".mha", ".nrrd"):
        sitk.WriteImage(image, str(tmp_path / f"scan{suffix}"))
        out = tmp_path / f"out{suffix}"
        assert main(["predict", "--model", str(unet_model), "--input", str(tmp_path / f"scan{suffix}"),
                     "--out", str(out)]) == 0
        mask = sitk.ReadImage(str(out / f"scan_mask{suffix}"))
        assert mask.GetSize() == image.GetSize() and mask.GetPixelID() == sitk.sitkUInt8
        assert np.allclose(mask.GetDirection(), image.GetDirection()) and np.allclose(mask.GetOrigin(),
                                                                                      image.GetOrigin())
        assert np.allclose(mask.GetSpacing(), image.GetSpacing())
        assert mask.GetMetaData("medseg_model").startswith("medseg unet (automated, init scratch)")
