"""MedSAM's input normalisation ([0, 1] scaling, no SAM mean/std): applied when training from init
``medsam``, recorded in the exported model, and used wherever the model is loaded (evaluation, inference)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.cli import main
from medseg.errors import MedsegError
from medseg.models.backbones import PIXEL_MEAN, normalisation_for
from medseg.models.checkpoints import export_checkpoint, load_exported
from medseg.models.factory import build_model, model_spec
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import PeftConfig
from medseg.train.embedding_cache import encoder_fingerprint


def _model(normalisation: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init
        return build_model("vit_t_dec_vanilla", PeftConfig(), 64, 2, normalisation=normalisation)


def test_medsam_scales_inputs_to_unit_range_and_sam_uses_its_mean_and_std() -> None:
    medsam, sam = _model("medsam"), _model("sam")
    images = torch.full((1, 3, 64, 64), 255.0)
    assert torch.equal((images - medsam.pixel_mean) / medsam.pixel_std, torch.ones_like(images))
    assert sam.pixel_mean.flatten().tolist() == pytest.approx(list(PIXEL_MEAN))
    assert normalisation_for("medsam") == "medsam" and normalisation_for("sslsam") == "sam"
    assert encoder_fingerprint(medsam) != encoder_fingerprint(sam)  # cached embeddings never mix


def test_the_exported_model_records_and_restores_it(tmp_path: Path) -> None:
    export_checkpoint(_model("medsam"), tmp_path / "model.pt", model_spec("vit_t_dec_vanilla", PeftConfig()), {})
    model, _ = load_exported(tmp_path / "model.pt")
    assert model.normalisation == "medsam" and model.pixel_std.flatten().tolist() == [255.0] * 3
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["normalisation"] = "imagenet"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(MedsegError, match=r"bad\.pt: checkpoint field 'normalisation' must be one of"):
        load_exported(tmp_path / "bad.pt")
    del payload["normalisation"]
    torch.save(payload, tmp_path / "old.pt")  # written before the field existed: SAM's
    assert load_exported(tmp_path / "old.pt")[0].normalisation == "sam"


def test_training_from_init_medsam_trains_and_exports_with_it(ingested_sample: Path, tmp_path: Path) -> None:
    """``--init medsam --init-weights <folder>`` starts from <folder>/<backbone>/medsam_<backbone>.pth (a stand-in
    for MedSAM's release: plain SAM weights) and normalises as MedSAM; evaluate places the run by its init."""
    torch.manual_seed(1)
    release = SamSegmenter("vit_t", 64, 2).state_dict()
    (tmp_path / "medsam/vit_t").mkdir(parents=True)
    torch.save(release, tmp_path / "medsam/vit_t/medsam_vit_t.pth")
    params = tiny_params()
    params["finetune"].update(max_epochs=1, work_dir=str(tmp_path / "work"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(tmp_path / "params.yaml"), "--dataset", "sample", "--data", str(ingested_sample)]
    assert main(["finetune", "--strategy", "vit_t_dec_vanilla", "--out", str(tmp_path / "run"), "--init", "medsam",
                 "--init-weights", str(tmp_path / "medsam"), *common]) == 0
    model, metadata = load_exported(tmp_path / "run/model.pt")
    assert metadata["init"] == "medsam" and model.normalisation == "medsam"
    assert metadata["random_init"] is False and metadata["profile"] == "full"
    for key, value in model.image_encoder.state_dict().items():  # decoder-only: the encoder is MedSAM's
        assert torch.equal(value, release[f"image_encoder.{key}"]), key
    assert main(["evaluate", "--strategy", "vit_t_dec_vanilla", "--model", str(tmp_path / "run"),
                 "--runs-root", str(tmp_path / "runs"), *common]) == 0
    assert (tmp_path / "runs/sample/medsam/full/automated/vit_t_dec_vanilla/eval/metrics.json").is_file()


def test_zero_shot_medsam_is_exported_with_its_normalisation(tmp_path: Path) -> None:
    args = ["export_sam", "--backbone", "vit_t", "--mode", "box", "--image-size", "64", "--init", "medsam",
            "--out", str(tmp_path / "medsam.pt")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    model, metadata = load_exported(tmp_path / "medsam.pt")
    assert metadata["init"] == "medsam" and model.normalisation == "medsam" and model.candidates
