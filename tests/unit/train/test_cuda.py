"""CUDA checks: fused attention against stock on the GPU, bf16 training, and evaluation on the device."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from helpers import peft_config, tiny_params
from medseg.models.segmenter import SamSegmenter
from medseg.models.speedups import use_fused_attention
from medseg.models.strategies import apply_strategy, parse_strategy
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_fused_attention_matches_stock_on_cuda() -> None:
    torch.manual_seed(0)
    stock = SamSegmenter("vit_b", 256, 2)
    apply_strategy(stock, parse_strategy("vit_b_endec_lora"), peft_config())
    with torch.no_grad():
        for name, parameter in stock.named_parameters():
            if "rel_pos" in name:
                parameter.normal_(0.0, 0.1)
    fused = copy.deepcopy(stock)
    use_fused_attention(fused)
    images = torch.rand(2, 3, 256, 256, device="cuda") * 255
    expected, actual = stock.cuda().train()(images), fused.cuda().train()(images)
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-3)


def test_bf16_training_on_cuda(ingested_sample: Path, tmp_path: Path) -> None:
    config = dataclasses.replace(TrainConfig.from_params(tiny_params()), max_epochs=1, device="cuda",
                                 precision="bf16", activation_checkpointing=True)
    summary = finetune("sample", "vit_t_endec_lora", ingested_sample, tmp_path / "out", config, tmp_path / "w")
    assert summary["device"] == "cuda" and summary["peak_memory_mb"] > 0
