"""Parameter-efficient fine-tuning modules (Adapter, LoRA) and where they go in SAM.

Placements follow the study (Gu et al., section 4.1.1) as fixed here:
- Adapter (bottleneck ``ratio * D``, GELU): in an encoder block, one adapter after the attention
  (with a skip) and one in parallel to the MLP, scaled by ``mlp_scale``; in the mask decoder, one
  after the token self-attention and one after the token-to-image cross-attention of each two-way block.
- LoRA (rank ``r``): on the query and value projections of encoder blocks (SAM's fused ``qkv`` and
  TinyViT's per-head ``qkv`` layout alike: only q and v features receive the low-rank update) and
  of all seven decoder attentions.
Modules are inserted by wrapping, never by editing upstream code; wrap after loading pretrained
weights (the wrappers change state-dict keys).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Adapter(nn.Module):
    """Bottleneck MLP ``up(GELU(down(x)))``, optionally with a skip connection."""

    def __init__(self, dim: int, ratio: float, skip: bool) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.down, self.act, self.up = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.up(self.act(self.down(x)))
        return x + delta if self.skip else delta


class AdapterAfter(nn.Module):
    """Runs the wrapped attention, then an adapter with a skip on its output."""

    def __init__(self, attention: nn.Module, dim: int, ratio: float) -> None:
        super().__init__()
        self.inner, self.adapter = attention, Adapter(dim, ratio, skip=True)

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.inner(*args, **kwargs))


class AdapterBeside(nn.Module):
    """``mlp(x) + scale * adapter(x)``: an adapter in parallel to the wrapped MLP."""

    def __init__(self, mlp: nn.Module, dim: int, ratio: float, scale: float) -> None:
        super().__init__()
        self.inner, self.adapter, self.scale = mlp, Adapter(dim, ratio, skip=False), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + self.scale * self.adapter(x)


class LowRankUpdate(nn.Module):
    """``B(A(x))`` with A Kaiming-initialised and B zero, so the update starts at zero."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.a = nn.Linear(in_features, rank, bias=False)
        self.b = nn.Linear(rank, out_features, bias=False)
        nn.init.kaiming_uniform_(self.a.weight, a=math.sqrt(5))
        nn.init.zeros_(self.b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class LoRALinear(nn.Module):
    """A frozen-able linear layer plus a low-rank update of its whole output."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base, self.lora = base, LowRankUpdate(base.in_features, base.out_features, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora(x)


class LoRAQueryValue(nn.Module):
    """A fused qkv projection whose query and value output features get low-rank updates.

    ``q_index`` and ``v_index`` list the output features that are queries and values, so any
    layout works: SAM's ``[q | k | v]`` and TinyViT's per-head ``[q_h k_h v_h]`` alike."""

    def __init__(self, base: nn.Linear, rank: int, q_index: torch.Tensor, v_index: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.lora_q = LowRankUpdate(base.in_features, len(q_index), rank)
        self.lora_v = LowRankUpdate(base.in_features, len(v_index), rank)
        self.register_buffer("q_index", q_index, persistent=False)
        self.register_buffer("v_index", v_index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        out = out.index_add(-1, self.q_index, self.lora_q(x))
        return out.index_add(-1, self.v_index, self.lora_v(x))


def qv_indices(attention: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Query and value output features of an encoder attention's fused ``qkv`` layer."""
    if hasattr(attention, "key_dim"):  # TinyViT: per head [key_dim q | key_dim k | d v]
        heads, key_dim, value_dim = attention.num_heads, attention.key_dim, attention.d
        stride = 2 * key_dim + value_dim
        starts = torch.arange(heads) * stride
        q = (starts[:, None] + torch.arange(key_dim)).flatten()
        v = (starts[:, None] + 2 * key_dim + torch.arange(value_dim)).flatten()
        return q, v
    dim = attention.qkv.in_features  # SAM ViT: [q | k | v], each dim wide
    return torch.arange(dim), torch.arange(2 * dim, 3 * dim)


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """The attention blocks of an image encoder, in order (TinyViT: stages 1-3; stage 0 is convolutional)."""
    if hasattr(encoder, "blocks"):
        return list(encoder.blocks)
    return [block for layer in encoder.layers[1:] for block in layer.blocks]


def add_encoder_adapters(encoder: nn.Module, indices: list[int], ratio: float, mlp_scale: float) -> None:
    blocks = encoder_blocks(encoder)
    for index in indices:
        block = blocks[index]
        dim = block.attn.qkv.in_features
        block.attn = AdapterAfter(block.attn, dim, ratio)
        block.mlp = AdapterBeside(block.mlp, dim, ratio, mlp_scale)


def add_encoder_lora(encoder: nn.Module, indices: list[int], rank: int) -> None:
    blocks = encoder_blocks(encoder)
    for index in indices:
        attention = blocks[index].attn
        attention.qkv = LoRAQueryValue(attention.qkv, rank, *qv_indices(attention))


def add_decoder_adapters(mask_decoder: nn.Module, ratio: float) -> None:
    for layer in mask_decoder.transformer.layers:
        dim = layer.self_attn.q_proj.in_features
        layer.self_attn = AdapterAfter(layer.self_attn, dim, ratio)
        layer.cross_attn_token_to_image = AdapterAfter(layer.cross_attn_token_to_image, dim, ratio)


def add_decoder_lora(mask_decoder: nn.Module, rank: int) -> None:
    transformer = mask_decoder.transformer
    attentions = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attentions += [layer.self_attn, layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    for attention in attentions:
        attention.q_proj = LoRALinear(attention.q_proj, rank)
        attention.v_proj = LoRALinear(attention.v_proj, rank)
