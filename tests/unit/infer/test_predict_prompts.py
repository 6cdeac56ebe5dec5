"""Point and box models with prompts from a JSON file or a prompt mask: prompts land on the right slice and
pixels of the input (a stand-in model paints the prompted box or point), real prompted models run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from predict_helpers import Painter, shared, stand_in

from medseg.cli import main
from medseg.data.protocol import Protocol
from medseg.infer.prompts import mask_prompts

CT = "dicom-seg-ct/data/segmentations/ct-3slice"


def _prompts(path: Path, *entries: dict) -> Path:
    path.write_text(json.dumps({"format": "medseg.prompts/1", "prompts": list(entries)}))
    return path


def _run(model: Path, source: Path, out: Path, *extra: str | Path) -> dict:
    assert main(["predict", "--model", str(model), "--input", str(source), "--out", str(out),
                 *(str(e) for e in extra)]) == 0
    return json.loads((out / "predict.json").read_text())


def test_a_volume_box_prompts_every_slice_it_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.random.default_rng(0).normal(size=(5, 32, 32)).astype(np.float32)
    affine = np.array([[0, 0, -1, 0], [0, -1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 1]], dtype=float)  # file axes S, P, L
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    model = stand_in(monkeypatch, tmp_path, Painter(32, "box"), Protocol("RAS+", 2, 32, None, None, 2**27))
    prompts = _prompts(tmp_path / "p.json", {"box": [1, 4, 10, 3, 9, 20], "label": 7}, {"box": [0, 0, 0, 0, 1, 1]})
    summary = _run(model, tmp_path / "scan.nii.gz", tmp_path / "out", "--prompts", prompts)
    expected = np.zeros(data.shape, dtype=np.uint8)
    expected[1:4, 4:10, 10:21] = 7  # inclusive corners, in the file's own voxel indices
    expected[0, 0:2, 0:2] = 1
    assert np.array_equal(np.asarray(nib.load(tmp_path / "out/scan_mask.nii.gz").dataobj), expected)
    assert summary["outputs"][0]["prompts"] == 4 and summary["prompts"]["source"] == "json"  # 3 slices + 1
    assert summary["labels"] == {"1": "lesion", "7": "object 7"}


def test_a_point_on_an_image_is_the_pixel_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(tmp_path / "a.png")
    model = stand_in(monkeypatch, tmp_path, Painter(16, "point"), Protocol("file", 2, 16, None, None, 2**27))
    _run(model, tmp_path / "a.png", tmp_path / "out", "--prompts", _prompts(tmp_path / "p.json", {"point": [11, 3]}))
    mask = np.asarray(Image.open(tmp_path / "out/a_mask.png"))
    assert np.argwhere(mask).tolist() == [[3, 11]]  # row y=3, column x=11


def test_a_box_on_a_dicom_slice_lands_on_that_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import highdicom as hd
    import pydicom

    series = shared(CT)
    model = stand_in(monkeypatch, tmp_path, Painter(512, "box"), Protocol("RAS+", 2, 512, None, None, 2**27))
    prompts = _prompts(tmp_path / "p.json", {"image": "02.dcm", "box": [100, 200, 149, 219]})
    _run(model, series, tmp_path / "out", "--prompts", prompts)
    seg = hd.seg.segread(tmp_path / "out/ct-3slice_seg.dcm")
    uids = [pydicom.dcmread(series / f"0{n}.dcm", stop_before_pixels=True).SOPInstanceUID for n in (1, 2, 3)]
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True)
    assert not frames[0].any() and not frames[2].any()
    assert np.argwhere(frames[1]).min(axis=0).tolist() == [200, 100]
    assert np.argwhere(frames[1]).max(axis=0).tolist() == [219, 149] and frames[1].sum() == 20 * 50


def test_point_model_with_a_prompts_file_and_with_a_prompt_mask(point_model: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(3).integers(0, 255, (40, 50), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "scan.png")
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[5:15, 5:15], mask[25:35, 30:45] = 1, 2
    Image.fromarray(mask).save(tmp_path / "scan_labels.png")
    by_file = _run(point_model, tmp_path / "scan.png", tmp_path / "json",
                   "--prompts", _prompts(tmp_path / "p.json", {"point": [10, 10]}, {"point": [37, 30], "label": 2}))
    by_mask = _run(point_model, tmp_path / "scan.png", tmp_path / "mask", "--prompt-mask", tmp_path / "scan_labels.png")
    assert by_file["outputs"][0]["prompts"] == 2 and by_mask["outputs"][0]["prompts"] == 2
    assert by_mask["prompts"]["source"] == "mask" and by_file["model"]["mode"] == "point"
    for out in ("json", "mask"):
        written = np.asarray(Image.open(tmp_path / out / "scan_mask.png"))
        assert written.shape == (40, 50) and set(np.unique(written)) <= {0, 1, 2}


def test_box_model_prompted_by_a_dicom_seg(box_model: Path, tmp_path: Path) -> None:
    import highdicom as hd

    series = shared(CT)
    summary = _run(box_model, series, tmp_path / "out", "--prompt-mask", series.parent / "liver.dcm",
                   "--window", "-160", "240")
    assert summary["protocol"]["source"] == "command line" and summary["protocol"]["intensity_window"] == [-160, 240]
    assert summary["outputs"][0]["prompts"] >= 1 and summary["model"]["strategy"] == "original SAM"
    seg = hd.seg.segread(tmp_path / "out/ct-3slice_seg.dcm")
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["object 1"]


def test_prompts_from_a_mask_follow_the_study_and_are_fixed() -> None:
    masks = np.zeros((2, 32, 32), dtype=np.uint8)
    masks[1, 2:8, 2:8], masks[1, 20:30, 20:24], masks[1, 12:16, 25:30] = 3, 3, 5
    boxes = mask_prompts(masks, "box")
    assert [(p.slice, p.label) for p in boxes] == [(1, 3), (1, 3), (1, 5)]  # one per object, none on slice 0
    assert np.allclose(boxes[0].coords, [2, 2, 7, 7], atol=2) and np.allclose(boxes[1].coords, [20, 20, 23, 29],
                                                                               atol=3)
    assert all(np.array_equal(a.coords, b.coords) for a, b in zip(boxes, mask_prompts(masks, "box"), strict=True))
    points = mask_prompts(masks, "point")
    for point in points:
        x, y = point.coords.astype(int)
        assert masks[point.slice, y, x] == point.label  # inside its object
