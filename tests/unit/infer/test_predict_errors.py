"""Bad inputs to `medseg predict`: one line naming the file and the problem, exit 2, nothing written."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from predict_helpers import shared

CT = "dicom-seg-ct/data/segmentations/ct-3slice"


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(20, 20, 3)).astype(np.float32), np.eye(4)), path)
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24), dtype=np.uint8)).save(path)
    return path


def _refused(outcome: tuple[int, list[str]], out: Path, *parts: str) -> None:
    code, errors = outcome
    assert code == 2 and len(errors) == 1, errors
    assert errors[0].startswith("medseg predict: error: ")
    for part in parts:
        assert part in errors[0], errors[0]
    assert not out.exists()


def test_missing_corrupt_and_truncated_inputs(unet_model: Path, volume: Path, image: Path, tmp_path: Path,
                                              run_predict: Callable) -> None:
    out = tmp_path / "out"
    _refused(run_predict("--model", unet_model, "--input", tmp_path / "nope.nii.gz", "--out", out), out,
             "nope.nii.gz: input not found")
    volume.write_bytes(gzip.compress(gzip.decompress(volume.read_bytes())[:600]))  # header, then cut short
    _refused(run_predict("--model", unet_model, "--input", volume, "--out", out), out, "scan.nii.gz",
             "cannot read voxel data")
    image.write_bytes(image.read_bytes()[:60])
    _refused(run_predict("--model", unet_model, "--input", image, "--out", out), out, "image.png", "cannot read")
    (tmp_path / "notes.txt").write_text("x")
    _refused(run_predict("--model", unet_model, "--input", tmp_path / "notes.txt", "--out", out), out,
             "notes.txt: not a supported input")


def test_empty_folders_and_mixed_or_broken_dicom_series(unet_model: Path, tmp_path: Path,
                                                        run_predict: Callable) -> None:
    import pydicom

    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    _refused(run_predict("--model", unet_model, "--input", tmp_path / "empty", "--out", out), out,
             "empty: input folder is empty")
    mixed = tmp_path / "mixed"
    shutil.copytree(shared(CT), mixed)
    other = pydicom.dcmread(mixed / "03.dcm")
    other.SeriesInstanceUID = pydicom.uid.generate_uid()
    other.save_as(mixed / "03.dcm")
    _refused(run_predict("--model", unet_model, "--input", mixed, "--out", out), out,
             "mixed: 2 DICOM series in one folder")
    broken = tmp_path / "broken"
    shutil.copytree(shared(CT), broken)
    (broken / "02.dcm").write_bytes((broken / "02.dcm").read_bytes()[:4000])
    _refused(run_predict("--model", unet_model, "--input", broken, "--out", out), out, "02.dcm")


def test_models_that_are_not_medseg_models(image: Path, tmp_path: Path, run_predict: Callable) -> None:
    out = tmp_path / "out"
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    _refused(run_predict("--model", tmp_path / "plain.pt", "--input", image, "--out", out), out,
             "plain.pt: not a medseg.sam/1 checkpoint")
    torch.save(Path("pickled"), tmp_path / "code.pt")  # an object, not tensors: weights-only refuses it
    _refused(run_predict("--model", tmp_path / "code.pt", "--input", image, "--out", out), out,
             "code.pt: cannot load checkpoint safely")
    _refused(run_predict("--model", tmp_path / "none.pt", "--input", image, "--out", out), out,
             "none.pt: checkpoint not found")


def test_prompts_that_do_not_fit_the_model_or_the_inputs(unet_model: Path, point_model: Path, image: Path,
                                                         tmp_path: Path, run_predict: Callable) -> None:
    out, prompts = tmp_path / "out", tmp_path / "prompts.json"

    def with_prompts(*entries: object, model: Path = point_model) -> tuple[int, list[str]]:
        prompts.write_text(json.dumps({"prompts": list(entries)}))
        return run_predict("--model", model, "--input", image, "--out", out, "--prompts", prompts)

    _refused(with_prompts({"point": [1, 2]}, model=unet_model), out, "automated and takes no prompts")
    _refused(run_predict("--model", point_model, "--input", image, "--out", out), out,
             "the model takes point prompts: give --prompts")
    _refused(with_prompts({"box": [1, 2, 3, 4]}), out, "prompts.json: prompt 1: has box, but the model takes one point")
    _refused(with_prompts({"image": "other.png", "point": [1, 2]}), out, "prompt 1: 'image' 'other.png' is not among")
    _refused(with_prompts({"point": [1, 2, 3]}), out, "prompt 1: 'point' must be 2 numbers")
    _refused(with_prompts({"point": [30, 2]}), out, "prompt 1: [30.0, 2.0] lies outside image.png (size [24, 20])")
    _refused(with_prompts({"point": [1, 2], "label": 0}), out, "'label' must be a whole number in 1..255")
    _refused(with_prompts(), out, "no prompt for input 'image.png'")
    prompts.write_text("{not json")
    _refused(run_predict("--model", point_model, "--input", image, "--out", out, "--prompts", prompts), out,
             "prompts.json: not a valid JSON prompts file")
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "small_mask.png")
    _refused(run_predict("--model", point_model, "--input", image, "--out", out, "--prompt-mask",
                         tmp_path / "small_mask.png"), out, "small_mask.png: prompt mask size (5, 5) differs")


def test_protocol_choices(box_model: Path, unet_model: Path, image: Path, tmp_path: Path,
                          run_predict: Callable) -> None:
    out = tmp_path / "out"
    mask = tmp_path / "labels.png"
    Image.fromarray(np.pad(np.ones((4, 4), dtype=np.uint8), 8)[:20, :24]).save(mask)
    base = ("--input", image, "--out", out, "--prompt-mask", mask)
    _refused(run_predict("--model", box_model, *base), out, "model.pt: the model records no ingestion protocol",
             "--window LOW HIGH", "--min-max")
    _refused(run_predict("--model", box_model, *base, "--window", "10", "5"), out, "--window LOW HIGH needs LOW < HIGH")
    _refused(run_predict("--model", box_model, *base, "--window", "0", "5", "--min-max"), out,
             "give --window or --min-max, not both")
    _refused(run_predict("--model", unet_model, "--input", image, "--out", out, "--min-max"), out,
             "the model records its ingestion protocol (min_max, slice axis 2); --min-max applies only")


def test_huge_inputs_and_outputs_that_may_not_be_written(unet_model: Path, volume: Path, tmp_path: Path,
                                                         run_predict: Callable) -> None:
    out = tmp_path / "out"
    _refused(run_predict("--model", unet_model, "--input", volume, "--out", out, "--max-voxels", "100"), out,
             "scan.nii.gz: image of size (20, 20, 3) exceeds the limit of 100 voxels")
    inside = tmp_path / "inputs"
    inside.mkdir()
    shutil.copy(volume, inside / "scan.nii.gz")
    _refused(run_predict("--model", unet_model, "--input", inside, "--out", inside / "masks"), inside / "masks",
             "output lies inside the input")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, errors = run_predict("--model", unet_model, "--input", volume, "--out", foreign)
    assert code == 2 and len(errors) == 1 and "holds files `medseg predict` did not write (e.g. keep.txt)" in errors[0]
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
    (tmp_path / "a_file").write_text("x")
    code, errors = run_predict("--model", unet_model, "--input", volume, "--out", tmp_path / "a_file")
    assert code == 2 and "output exists and is not a folder written by `medseg predict`" in errors[0]
    assert (tmp_path / "a_file").read_text() == "x"


def test_evaluate_takes_no_onnx_export_folder(ingested_sample: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Only predict, serve and export_onnx read an export folder: evaluate looks for the folder's model.pt."""
    from medseg.cli import main

    export = tmp_path / "export"
    export.mkdir()
    (export / "onnx.json").write_text("{}")
    code = main(["evaluate", "--dataset", "sample", "--strategy", "vit_t_zeroshot", "--data", str(ingested_sample),
                 "--model", str(export), "--runs-root", str(tmp_path / "runs")])
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert code == 2 and len(errors) == 1 and f"{export / 'model.pt'}: checkpoint not found" in errors[0], errors
