"""SSLSAM: masked-image pretraining of a SAM encoder (tiny ViT-T, 64 px slices of the phantom)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from helpers import kill_after_first_commit, tiny_params
from medseg.cli import main
from medseg.models.factory import build_model
from medseg.models.strategies import PeftConfig
from medseg.pretrain.mae import MaskedAutoencoder, patchify, random_masks, unpatchify
from medseg.train.config import TrainConfig

DECODER = {"dim": 32, "depth": 1, "heads": 4}


def _images(data: Path, count: int = 4) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.load(data / "images.npy")[:count]).float()[:, None].expand(-1, 3, -1, -1).contiguous()


def test_masks_hide_exactly_the_ratio_and_patches_round_trip() -> None:
    masks = random_masks(3, 4, 0.75, torch.Generator().manual_seed(0))
    assert masks.shape == (3, 4, 4) and masks.flatten(1).sum(1).tolist() == [12, 12, 12]
    assert torch.equal(masks, random_masks(3, 4, 0.75, torch.Generator().manual_seed(0)))
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(unpatchify(patchify(images)), images)


@pytest.mark.parametrize("backbone", ["vit_t", "vit_b"])
def test_the_mask_token_replaces_hidden_patches_in_sams_own_encoder(backbone: str) -> None:
    """Nothing hidden: the encoder's output is SAM's encoder's; hidden patches change it."""
    model = MaskedAutoencoder(backbone, 64, DECODER).eval()
    images = torch.rand(1, 3, 64, 64) * 255
    normalised = (images - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        plain = model.image_encoder(normalised)
        model._masks = torch.zeros(1, 4, 4, dtype=torch.bool)
        unmasked = model.image_encoder(normalised)
        model._masks = random_masks(1, 4, 0.75, torch.Generator().manual_seed(0))
        masked = model.image_encoder(normalised)
        model._masks = None
    assert torch.equal(plain, unmasked) and not torch.allclose(plain, masked)
    assert set(model.encoder_state()) == {f"image_encoder.{k}" for k in model.image_encoder.state_dict()}


def test_the_reconstruction_loss_falls_over_a_few_steps_on_the_sample(ingested_sample: Path) -> None:
    torch.manual_seed(0)
    model = MaskedAutoencoder("vit_t", 64, DECODER)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    images, masks = _images(ingested_sample), random_masks(4, 4, 0.75, torch.Generator().manual_seed(1))
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss, _ = model(images, masks)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def _project(root: Path, data: Path, epochs: int = 2, **finetune: object) -> Path:
    params = tiny_params()
    params["pretrain_mae"].update(datasets=["sample"], image_size=64, epochs=epochs, batch_size=4, decoder=DECODER)
    params["finetune"].update(work_dir=str(root / "work"), num_threads=1, **finetune)
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    if not (root / "data/sample").exists():
        (root / "data/sample").symlink_to(data, target_is_directory=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


def _command(root: Path, params: Path, out: str, resume: bool = False) -> list[str]:
    return [str(Path(sys.executable).parent / "medseg"), "pretrain_mae", "--backbone", "vit_t", "--data-root",
            str(root / "data"), "--out", str(root / out), "--params", str(params), *(["--resume"] if resume else [])]


@pytest.fixture(scope="module")
def pretrained(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mae")
    assert main(_command(root, _project(root, ingested_sample), "sslsam")[1:]) == 0
    return root


def test_the_run_writes_the_encoder_curves_and_reconstructions(pretrained: Path) -> None:
    payload = torch.load(pretrained / "sslsam/encoder.pt", weights_only=True)
    assert payload["format"] == "medseg.encoder/1" and payload["metadata"]["init"] == "sslsam"
    assert payload["backbone"] == "vit_t" and payload["metadata"]["random_init"] is True  # what finetune reads
    assert not any(key.startswith(("decoder", "mask_token")) for key in payload["state_dict"])
    summary = json.loads((pretrained / "sslsam/train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["random_init"] is True and summary["datasets"] == ["sample"]
    curve = (pretrained / "sslsam/training/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert len(curve) == 3
    from PIL import Image

    with Image.open(pretrained / "sslsam/reconstructions.png") as image:
        assert image.width > 400 and len(image.getcolors(2**24)) > 50


def test_the_exported_encoder_is_what_finetune_starts_from(pretrained: Path) -> None:
    """``--init sslsam --init-weights <this run's folder>``: SAM's weights, then this encoder over them."""
    config = TrainConfig.from_params(tiny_params(), strategy="vit_t_dec_vanilla", init="sslsam",
                                     init_weights=pretrained / "sslsam")
    assert config.encoder_checkpoint == str(pretrained / "sslsam/encoder.pt") and config.checkpoint is None
    assert config.init_from_random  # no SAM weights under the encoder (the tiny params' checkpoint is null)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no SAM weights
        torch.manual_seed(0)
        fresh = build_model("vit_t_dec_vanilla", PeftConfig(), 64, 2)
        torch.manual_seed(0)
        loaded = build_model("vit_t_dec_vanilla", PeftConfig(), 64, 2, checkpoint=config.checkpoint,
                             encoder_checkpoint=config.encoder_checkpoint)
    exported = torch.load(pretrained / "sslsam/encoder.pt", weights_only=True)["state_dict"]
    for key, value in loaded.image_encoder.state_dict().items():
        assert torch.equal(value, exported[f"image_encoder.{key}"]), key
    assert any(not torch.equal(a, b) for a, b in zip(fresh.image_encoder.state_dict().values(),
                                                      loaded.image_encoder.state_dict().values(), strict=True))


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(ingested_sample: Path, tmp_path: Path) -> None:
    params = _project(tmp_path, ingested_sample, epochs=3)
    state = tmp_path / "work/pretrain_mae/vit_t/state.pt"
    kill_after_first_commit(_command(tmp_path, params, "resumed"), state)
    assert not (tmp_path / "resumed").exists()
    subprocess.run(_command(tmp_path, params, "resumed", resume=True), check=True, capture_output=True)
    straight = _project(tmp_path / "b", ingested_sample, epochs=3)
    subprocess.run(_command(tmp_path / "b", straight, "straight"), check=True, capture_output=True)
    resumed = torch.load(tmp_path / "resumed/encoder.pt", weights_only=True)["state_dict"]
    uninterrupted = torch.load(tmp_path / "b/straight/encoder.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    curves = [(folder / "training/plots/metrics/val/loss.tsv").read_text()
              for folder in (tmp_path / "resumed", tmp_path / "b/straight")]
    assert curves[0] == curves[1]


def test_a_missing_dataset_is_one_line_and_nothing_is_written(ingested_sample: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    params = _project(tmp_path, ingested_sample)
    settings = yaml.safe_load(params.read_text())
    settings["pretrain_mae"]["datasets"] = ["sample", "mri_heart"]
    params.write_text(yaml.safe_dump(settings))
    assert main(_command(tmp_path, params, "out")[1:]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "mri_heart" in error and not (tmp_path / "out").exists()
