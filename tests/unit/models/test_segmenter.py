"""SAM segmenter: shapes, parameter counts (study Table 3), freezing and strategy ids."""

from __future__ import annotations

import pytest
import torch

from helpers import peft_config
from medseg.errors import MedsegError
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import apply_strategy, count_parameters, parse_strategy


@pytest.fixture(scope="module")
def tiny_model() -> SamSegmenter:
    torch.manual_seed(0)
    return SamSegmenter("vit_t", image_size=64, num_classes=2)


def test_forward_gives_class_logits_at_input_size(tiny_model: SamSegmenter) -> None:
    logits = tiny_model(torch.rand(2, 3, 64, 64) * 255)
    assert logits.shape == (2, 2, 64, 64)
    assert torch.isfinite(logits).all()


def test_vit_t_parameter_counts_match_the_study(tiny_model: SamSegmenter) -> None:
    """Study Table 3, ViT-T Decoder Vanilla: 9.99M total, 3.92M trainable (2 output classes)."""
    apply_strategy(tiny_model, parse_strategy("vit_t_dec_vanilla"), peft_config())
    total, trainable = count_parameters(tiny_model)
    assert total == 9_989_771
    assert trainable == 3_918_019
    apply_strategy(tiny_model, parse_strategy("vit_t_endec_vanilla"), peft_config())
    assert count_parameters(tiny_model) == (total, total)


def test_stock_token_count_matches_mobile_sam() -> None:
    """Three classes use SAM's stock four mask tokens: the count equals MobileSAM's 10,130,092."""
    assert count_parameters(SamSegmenter("vit_t", 64, num_classes=3))[0] == 10_130_092


def test_decoder_only_trains_only_the_decoder(tiny_model: SamSegmenter) -> None:
    apply_strategy(tiny_model, parse_strategy("vit_t_dec_vanilla"), peft_config())
    tiny_model.zero_grad(set_to_none=True)
    embeddings = tiny_model.embed(torch.rand(1, 3, 64, 64) * 255)
    assert not embeddings.requires_grad  # frozen encoder builds no autograd graph
    tiny_model.decode(embeddings).sum().backward()
    assert all(p.grad is None for p in tiny_model.image_encoder.parameters())
    assert all(p.grad is None for p in tiny_model.prompt_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.mask_decoder.parameters())


@pytest.mark.parametrize("strategy", ["vit_t_dec_vanilla", "vit_t_dec_adapter", "vit_t_endec_lora"])
def test_an_automated_batch_decodes_as_its_images_one_by_one(strategy: str) -> None:
    """One decoder call for the batch (the default prompt's tokens broadcast over the images) gives each
    image's logits, predicted IoU and decoder gradients of one call per image."""
    torch.manual_seed(0)
    model = SamSegmenter("vit_t", image_size=64, num_classes=3)
    apply_strategy(model, parse_strategy(strategy), peft_config())
    embeddings = model.embed(torch.rand(4, 3, 64, 64) * 255).detach()
    target = torch.rand(4, 3, 64, 64)

    def decoded_with_gradients(batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list]:
        model.zero_grad(set_to_none=True)
        logits, iou = (torch.cat(parts) for parts in zip(*(model.decode_all(batch) for batch in batches), strict=True))
        ((logits - target) ** 2).mean().backward()
        return logits, iou, [p.grad.clone() for p in model.mask_decoder.parameters() if p.grad is not None]

    batched, batched_iou, batched_grads = decoded_with_gradients([embeddings])
    single, single_iou, single_grads = decoded_with_gradients(list(embeddings.split(1)))
    assert torch.allclose(batched, single, atol=1e-5) and torch.allclose(batched_iou, single_iou, atol=1e-5)
    assert len(batched_grads) == len(single_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(batched_grads, single_grads, strict=True))
    assert not torch.equal(batched[0], batched[1])  # the images were not given one image's answer


def test_encoder_decoder_strategy_trains_the_encoder(tiny_model: SamSegmenter) -> None:
    apply_strategy(tiny_model, parse_strategy("vit_t_endec_vanilla"), peft_config())
    tiny_model.zero_grad(set_to_none=True)
    tiny_model(torch.rand(1, 3, 64, 64) * 255).sum().backward()
    assert tiny_model.image_encoder.patch_embed.seq[0].c.weight.grad is not None


@pytest.mark.parametrize("bad", ["vit_t", "vit_q_dec_vanilla", "vit_t_middle_vanilla", "vit_t_dec_magic"])
def test_bad_strategy_ids_are_rejected(bad: str) -> None:
    with pytest.raises(MedsegError, match="strategy"):
        parse_strategy(bad)


@pytest.mark.parametrize(("size", "classes"), [(100, 2), (32, 2), (64, 1)])
def test_bad_model_settings_are_rejected(size: int, classes: int) -> None:
    with pytest.raises(MedsegError):
        SamSegmenter("vit_t", size, classes)
