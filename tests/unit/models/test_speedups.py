"""Fused attention and activation checkpointing change speed and memory, not results."""

from __future__ import annotations

import copy

import pytest
import torch

from helpers import peft_config
from medseg.models import speedups
from medseg.models.segmenter import SamSegmenter
from medseg.models.speedups import use_activation_checkpointing, use_fused_attention
from medseg.models.strategies import apply_strategy, parse_strategy


def _perturbed(backbone: str, strategy: str) -> SamSegmenter:
    torch.manual_seed(0)
    model = SamSegmenter(backbone, 64, 2)
    apply_strategy(model, parse_strategy(strategy), peft_config())
    with torch.no_grad():
        for name, parameter in model.named_parameters():  # zero-initialised LoRA / rel-pos would hide errors
            if "rel_pos" in name or ".lora" in name:
                parameter.normal_(0.0, 0.1)
    return model.train()


def _outputs_and_grads(model: SamSegmenter, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = model(images)
    (logits.square().mean()).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("backbone", "strategy"), [("vit_b", "vit_b_endec_lora"), ("vit_t", "vit_t_endec_adapter")])
def test_speedups_keep_outputs_gradients_and_keys(backbone: str, strategy: str) -> None:
    stock = _perturbed(backbone, strategy)
    fast = copy.deepcopy(stock)
    switched = use_fused_attention(fast)
    assert switched == (12 if backbone == "vit_b" else 0)  # TinyViT keeps its own attention
    assert use_activation_checkpointing(fast) == 12  # ViT-B blocks; TinyViT's 2 + 2 + 6 + 2 blocks
    images = torch.rand(2, 3, 64, 64) * 255
    expected, expected_grads = _outputs_and_grads(stock, images)
    actual, actual_grads = _outputs_and_grads(fast, images)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert actual_grads.keys() == expected_grads.keys() and expected_grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(actual_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)
    assert list(fast.state_dict()) == list(stock.state_dict())


def test_checkpointing_acts_only_while_training_with_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = speedups.checkpoint
    monkeypatch.setattr(speedups, "checkpoint", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    model = _perturbed("vit_b", "vit_b_endec_vanilla")
    use_activation_checkpointing(model)
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        model.eval()(images)
    assert not calls
    model.train()(images).sum().backward()
    assert len(calls) == 12  # one per ViT-B block
