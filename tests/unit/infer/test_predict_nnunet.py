"""`medseg predict` with an nnU-Net baseline (nnU-Net's own plans and predictor; random-init weights, flagged):
a PNG comes back as a PNG mask of its size, a small NIfTI as a mask on its grid, and predict.json names
nnU-Net."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from medseg.cli import main
from medseg.infer.model import load_model


def _predict(model: Path, source: Path, out: Path) -> dict:
    assert main(["predict", "--model", str(model), "--input", str(source), "--out", str(out)]) == 0
    return json.loads((out / "predict.json").read_text())


def _assert_names_nnunet(summary: dict) -> None:
    model = summary["model"]
    assert model["strategy"] == "nnunet" and model["backbone"] == "nnunet" and model["mode"] == "automated"
    assert model["random_init"] is True and model["synthetic_data"] is True
    assert any("random initialisation" in warning for warning in summary["warnings"])
    assert summary["protocol"]["source"] == "model"


def test_the_model_runs_nnunets_predictor(nnunet_model: Path) -> None:
    loaded = load_model(nnunet_model)
    assert type(loaded.module).__name__ == "NnunetSegmenter" and loaded.values == (0, 1)
    slices = torch.rand(2, 3, loaded.image_size, loaded.image_size) * 255
    probabilities = loaded.module(slices)
    assert probabilities.shape == (2, 2, loaded.image_size, loaded.image_size)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(1), atol=1e-4)


def test_a_png_gives_a_png_mask_of_its_size(nnunet_model: Path, tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (40, 52), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    summary = _predict(nnunet_model, tmp_path / "scan.png", tmp_path / "out")
    mask = Image.open(tmp_path / "out/scan_mask.png")
    assert mask.size == (52, 40) and mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, 1}
    assert mask.text["Description"].startswith("medseg nnunet (automated, init scratch) trained on sample")
    _assert_names_nnunet(summary)
    assert summary["outputs"][0]["kind"] == "2-D image"


def test_a_nifti_gives_a_mask_on_its_grid(nnunet_model: Path, tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(0, 300, (20, 24, 4)).astype(np.float32)
    affine = np.array([[0, -0.9, 0, 12], [0.8, 0, 0, -30], [0, 0, 2.5, 4], [0, 0, 0, 1]], dtype=float)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "scan.nii.gz")
    summary = _predict(nnunet_model, tmp_path / "scan.nii.gz", tmp_path / "out")
    mask = nib.load(tmp_path / "out/scan_mask.nii.gz")
    assert mask.shape == data.shape and mask.get_data_dtype() == np.uint8
    assert np.allclose(mask.affine, affine)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    assert mask.header["descrip"].tobytes().startswith(b"RANDOM-INIT SYNTHETIC medseg nnunet automated sample")
    _assert_names_nnunet(summary)
    assert summary["outputs"][0]["shape"] == [20, 24, 4] and summary["outputs"][0]["slices"] == 4
