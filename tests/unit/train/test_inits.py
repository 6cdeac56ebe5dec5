"""The runs' init axis (medseg.train.inits): SAM's, MedSAM's, SSLSAM's or SupSAM's weights, found under
``--init-weights`` (``models/pretrain/<init>/<backbone>/...``), recorded in the run, refused when absent or of
another backbone; and the params that list the pretrained runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.cli import main
from medseg.errors import MedsegError
from medseg.models.checkpoints import load_exported
from medseg.models.segmenter import SamSegmenter
from medseg.params import load_params
from medseg.pretrain.sup_run import WEIGHTS_FORMAT
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune
from medseg.train.inits import resolve_init

STRATEGY = "vit_t_dec_vanilla"
MAE_DECODER = {"dim": 32, "depth": 1, "heads": 4}


def _params(root: Path, **finetune_settings: Any) -> Path:
    """The tiny params as a file: one epoch, work under ``root``, a tiny MAE for pretrain_mae."""
    params = tiny_params()
    params["finetune"].update(max_epochs=1, work_dir=str(root / "work"), num_threads=1, **finetune_settings)
    params["pretrain_mae"].update(datasets=["sample"], image_size=64, epochs=1, batch_size=4, decoder=MAE_DECODER)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


def _sam_weights(seed: int) -> dict[str, torch.Tensor]:
    """A ViT-T SAM state dict (a stand-in for released or pretrained weights), distinct per seed."""
    torch.manual_seed(seed)
    return SamSegmenter("vit_t", 64, 2).state_dict()


def _supsam_file(path: Path, backbone: str = "vit_t", random_init: bool = False) -> Path:
    """A weights.pt as `medseg pretrain_sup` writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": WEIGHTS_FORMAT, "backbone": backbone, "image_size": 64,
                "metadata": {"init": "supsam", "epoch": 0, "val_dice": 0.5, "random_init": random_init},
                "model": _sam_weights(3)}, path)
    return path


def _finetune_args(root: Path, data: Path, *extra: str) -> list[str]:
    return ["finetune", "--dataset", "sample", "--strategy", STRATEGY, "--data", str(data), "--out",
            str(root / "out"), "--params", str(root / "params.yaml"), *extra]


def _one_line_error(capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def sslsam_run(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MAE encoder from `medseg pretrain_mae` at models/pretrain/sslsam/vit_t (the pipeline's layout),
    then `medseg finetune --init sslsam --init-weights models/pretrain/sslsam`."""
    root = tmp_path_factory.mktemp("sslsam")
    params = _params(root)
    (root / "data").mkdir()
    (root / "data/sample").symlink_to(ingested_sample, target_is_directory=True)
    assert main(["pretrain_mae", "--backbone", "vit_t", "--data-root", str(root / "data"), "--out",
                 str(root / "models/pretrain/sslsam/vit_t"), "--params", str(params)]) == 0
    assert main(_finetune_args(root, ingested_sample, "--init", "sslsam", "--init-weights",
                               str(root / "models/pretrain/sslsam"))) == 0
    return root


def test_finetune_from_sslsam_starts_from_the_pretrained_encoder(sslsam_run: Path) -> None:
    encoder = torch.load(sslsam_run / "models/pretrain/sslsam/vit_t/encoder.pt", weights_only=True)["state_dict"]
    model, metadata = load_exported(sslsam_run / "out/model.pt")
    for key, value in model.image_encoder.state_dict().items():  # decoder-only: the encoder stays the MAE's
        assert torch.equal(value, encoder[f"image_encoder.{key}"]), key
    torch.manual_seed(tiny_params()["seed"])
    fresh = SamSegmenter("vit_t", 64, 2).image_encoder.state_dict()  # the random init it would start from
    assert any(not torch.equal(value, fresh[key]) for key, value in model.image_encoder.state_dict().items())
    assert (metadata["init"], metadata["profile"], metadata["mode"]) == ("sslsam", "full", "automated")
    assert metadata["random_init"] is True  # SSLSAM over no SAM weights (the tiny params' checkpoint is null)
    summary = json.loads((sslsam_run / "out/train_summary.json").read_text())
    assert (summary["init"], summary["profile"]) == ("sslsam", "full")
    assert (sslsam_run / "work/sample/sslsam/full/automated").is_dir()  # the run's work folder, beside sam/


def test_a_pretrained_init_without_its_weights_is_a_one_line_error(ingested_sample: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _params(tmp_path)
    assert main(_finetune_args(tmp_path, ingested_sample, "--init", "supsam")) == 2
    _one_line_error(capsys, "init supsam needs --init-weights", "models/pretrain/supsam")
    (tmp_path / "supsam/vit_b").mkdir(parents=True)  # another backbone's folder only
    assert main(_finetune_args(tmp_path, ingested_sample, "--init", "supsam", "--init-weights",
                               str(tmp_path / "supsam"))) == 2
    _one_line_error(capsys, "no supsam weights for vit_t", f"expected {tmp_path / 'supsam/vit_t/weights.pt'}",
                    "medseg pretrain_sup")
    _supsam_file(tmp_path / "supsam/vit_t/weights.pt", backbone="vit_b")  # in vit_t's place, vit_b's weights
    assert main(_finetune_args(tmp_path, ingested_sample, "--init", "supsam", "--init-weights",
                               str(tmp_path / "supsam"))) == 2
    _one_line_error(capsys, str(tmp_path / "supsam/vit_t/weights.pt"), "holds vit_b weights, not vit_t")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_init_sam_takes_no_init_weights_and_unknown_inits_are_named(ingested_sample: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _params(tmp_path)
    _supsam_file(tmp_path / "supsam/vit_t/weights.pt")
    assert main(_finetune_args(tmp_path, ingested_sample, "--init", "sam", "--init-weights",
                               str(tmp_path / "supsam"))) == 2
    _one_line_error(capsys, "init sam starts from finetune.checkpoint", "--init-weights is for medsam")
    assert main(_finetune_args(tmp_path, ingested_sample, "--init", "imagenet")) == 2
    _one_line_error(capsys, "unknown init 'imagenet'", "sslsam")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("random_init", [True, False])
def test_pretraining_from_random_init_marks_the_fine_tuned_run(random_init: bool, ingested_sample: Path,
                                                               tmp_path: Path) -> None:
    """SupSAM weights start the run (not a SAM checkpoint); their file says whether their own pretraining
    started from random init, and the fine-tuned run says so too."""
    weights = _supsam_file(tmp_path / "supsam/vit_t/weights.pt", random_init=random_init)
    config = TrainConfig.from_params(tiny_params(), strategy=STRATEGY, init="supsam",
                                     init_weights=tmp_path / "supsam")
    assert (config.checkpoint, config.encoder_checkpoint, config.init_from_random) == (str(weights), None,
                                                                                      random_init)
    assert config.run_folder == "supsam/full/automated"
    summary = finetune("sample", STRATEGY, ingested_sample, tmp_path / "out", config, tmp_path / "work")
    model, metadata = load_exported(tmp_path / "out/model.pt")
    assert metadata["random_init"] is summary["random_init"] is random_init and metadata["init"] == "supsam"
    encoder = torch.load(weights, weights_only=True)["model"]
    assert all(torch.equal(value, encoder[f"image_encoder.{key}"])  # the run started from these weights
               for key, value in model.image_encoder.state_dict().items())


def test_each_init_finds_its_file_in_the_layout_the_pipeline_writes(tmp_path: Path) -> None:
    sam = str(tmp_path / "sam_vit_t.pt")
    assert resolve_init("sam", None, "", sam) == resolve_init("sam", None, "vit_t", sam)
    assert (resolve_init("sam", None, "", sam).checkpoint, resolve_init("sam", None, "", None).from_random) == (
        sam, False)  # a random-init SAM is flagged by its missing checkpoint, not by from_random
    (tmp_path / "medsam/vit_b").mkdir(parents=True)
    torch.save({"image_encoder.x": torch.zeros(1)}, tmp_path / "medsam/vit_b/medsam_vit_b.pth")  # a release file
    medsam = resolve_init("medsam", tmp_path / "medsam", "vit_b", sam)
    assert (medsam.checkpoint, medsam.encoder_checkpoint, medsam.from_random) == (
        str(tmp_path / "medsam/vit_b/medsam_vit_b.pth"), None, False)
    (tmp_path / "sslsam/vit_t").mkdir(parents=True)
    torch.save({"format": "medseg.encoder/1", "backbone": "vit_t", "metadata": {"random_init": False},
                "state_dict": {}}, tmp_path / "sslsam/vit_t/encoder.pt")
    sslsam = resolve_init("sslsam", tmp_path / "sslsam", "vit_t", sam)  # SAM's weights, then the encoder
    assert (sslsam.checkpoint, sslsam.encoder_checkpoint, sslsam.from_random) == (
        sam, str(tmp_path / "sslsam/vit_t/encoder.pt"), False)
    assert resolve_init("sslsam", tmp_path / "sslsam", "vit_t", None).from_random  # over no SAM weights
    supsam = _supsam_file(tmp_path / "supsam/vit_t/weights.pt")
    for given in (tmp_path / "supsam", tmp_path / "supsam/vit_t", supsam):  # the init's folder, a backbone's, the file
        assert resolve_init("supsam", given, "vit_t", sam).checkpoint == str(supsam)
    with pytest.raises(MedsegError, match=r"no supsam weights for vit_b \(expected .*supsam/vit_b/weights\.pt"):
        resolve_init("supsam", tmp_path / "supsam", "vit_b", sam)
    with pytest.raises(MedsegError, match=r"unknown init 'scratch'"):
        resolve_init("scratch", None, "vit_t", sam)


def _validated(edit: Any) -> dict[str, Any]:
    params = tiny_params()
    edit(params)
    return load_params(text=yaml.safe_dump(params))


def test_params_refuse_pretrained_inits_without_weights_and_the_removed_keys() -> None:
    assert _validated(lambda p: None)["finetune"]["pretrained"]["inits"] == ["sslsam", "supsam"]  # vit_t: pretrained
    with pytest.raises(MedsegError, match=r"finetune\.pretrained: no medsam weights for vit_t_dec_vanilla "
                                          r"\(vit_t is not in MedSAM's release \(ViT-B only\)\)"):
        _validated(lambda p: p["finetune"]["pretrained"].update(inits=["medsam"]))
    with pytest.raises(MedsegError, match=r"no sslsam weights for vit_b_dec_lora \(vit_b is not in "
                                          r"pretrain_mae\.backbones\)"):
        _validated(lambda p: p["finetune"]["pretrained"].update(strategies=["vit_t_dec_vanilla", "vit_b_dec_lora"]))
    _validated(lambda p: p["finetune"]["pretrained"].update(inits=["medsam"], strategies=["vit_b_dec_lora"]))
    with pytest.raises(MedsegError, match=r"finetune\.pretrained: strategies: give the strategies"):
        _validated(lambda p: p["finetune"]["pretrained"].update(strategies=[]))
    for key, expected in ((("finetune", "init"), "finetune.init: no longer a setting: runs from SAM's weights are "
                                                 "the finetune stage; MedSAM, SSLSAM and SupSAM runs are listed in "
                                                 "finetune.pretrained.inits"),
                          (("finetune", "encoder_checkpoint"), "finetune.encoder_checkpoint: no longer a setting"),
                          (("baseline", "modes"), "baseline.modes: no longer a setting")):
        with pytest.raises(MedsegError) as error:
            _validated(lambda p, key=key: p[key[0]].update({key[1]: "sam" if key[1] == "init" else None}))
        assert expected in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(MedsegError, match=r"finetune\.fewshot\.enabled: no longer a setting: list fewshot in "
                                          r"finetune\.profiles"):
        _validated(lambda p: p["finetune"]["fewshot"].update(enabled=True))
    with pytest.raises(MedsegError, match=r"finetune\.modes\.1: .*'automated', 'point' or 'box'"):
        _validated(lambda p: p["finetune"].update(modes=["automated", "automated_5shot"]))
    with pytest.raises(MedsegError, match=r"finetune\.profiles\.0: .*'full' or 'fewshot'"):
        _validated(lambda p: p["finetune"].update(profiles=["5shot"]))
