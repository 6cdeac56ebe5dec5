"""Checkpoint safety and round trips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import peft_config
from medseg.errors import MedsegError
from medseg.models.checkpoints import export_checkpoint, load_encoder_weights, load_exported, load_sam_weights
from medseg.models.factory import build_model, model_spec
from medseg.models.segmenter import SamSegmenter

SPEC = model_spec("vit_t_dec_vanilla", peft_config())


class _Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /dev/null",))


def _model(num_classes: int = 2, seed: int = 0) -> SamSegmenter:
    torch.manual_seed(seed)
    return SamSegmenter("vit_t", 64, num_classes)


def test_export_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model = _model().eval()
    images = torch.rand(2, 3, 64, 64) * 255
    export_checkpoint(model, tmp_path / "model.pt", SPEC, {"epoch": 3})
    loaded, metadata = load_exported(tmp_path / "model.pt")
    assert metadata == {"epoch": 3}
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit()}, path)
    with pytest.raises(MedsegError, match=r"evil\.pt"):
        load_exported(path)


def test_truncated_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    export_checkpoint(_model(), path, SPEC, {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MedsegError, match=r"model\.pt.*cannot load"):
        load_exported(path)


def test_stock_sam_weights_load_with_decoder_tokens_fitted(tmp_path: Path) -> None:
    """A stock-layout checkpoint (4 mask tokens) loads into a 2-class model: first tokens kept."""
    stock = _model(num_classes=3, seed=1)
    torch.save(stock.state_dict(), tmp_path / "mobile_sam.pt")
    model = _model(num_classes=2, seed=2)
    load_sam_weights(model, tmp_path / "mobile_sam.pt")
    assert torch.equal(model.mask_decoder.mask_tokens.weight, stock.mask_decoder.mask_tokens.weight[:3])
    assert torch.equal(model.image_encoder.neck[0].weight, stock.image_encoder.neck[0].weight)


def test_checkpoint_of_another_backbone_lists_mismatched_keys(tmp_path: Path) -> None:
    state = {"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}
    torch.save(state, tmp_path / "sam_vit_b.pth")
    model = _model()
    before = model.image_encoder.neck[0].weight.clone()
    with pytest.raises(MedsegError, match=r"sam_vit_b\.pth.*does not match.*unexpected \[image_encoder\.blocks"):
        load_sam_weights(model, tmp_path / "sam_vit_b.pth")
    assert torch.equal(model.image_encoder.neck[0].weight, before)  # nothing loaded


def test_random_init_warns_loudly() -> None:
    with pytest.warns(UserWarning, match="RANDOM weights"):
        build_model("vit_t_dec_vanilla", peft_config(), 64, 2, checkpoint=None)


def test_missing_checkpoint_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match=r"nowhere\.pth: checkpoint not found"):
        build_model("vit_t_dec_vanilla", peft_config(), 64, 2, checkpoint=str(tmp_path / "nowhere.pth"))


def test_encoder_only_weights_load_with_or_without_prefix(tmp_path: Path) -> None:
    """SSLSAM-style files hold only the image encoder; the decoder keeps its weights."""
    source = _model(seed=3)
    bare = {k: v for k, v in source.image_encoder.state_dict().items()}
    torch.save(bare, tmp_path / "sslsam_encoder.pth")
    model = _model(seed=4)
    decoder_before = model.mask_decoder.mask_tokens.weight.clone()
    load_encoder_weights(model, tmp_path / "sslsam_encoder.pth")
    assert torch.equal(model.image_encoder.neck[0].weight, source.image_encoder.neck[0].weight)
    assert torch.equal(model.mask_decoder.mask_tokens.weight, decoder_before)
    torch.save({f"image_encoder.{k}": v for k, v in bare.items()}, tmp_path / "prefixed.pth")
    load_encoder_weights(_model(seed=5), tmp_path / "prefixed.pth")


def test_encoder_weights_with_extra_keys_are_refused(tmp_path: Path) -> None:
    state = dict(_model().image_encoder.state_dict())
    state["mae_decoder.pred.weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "mae_full.pth")
    with pytest.raises(MedsegError, match=r"unexpected \[mae_decoder\.pred\.weight\]"):
        load_encoder_weights(_model(), tmp_path / "mae_full.pth")
