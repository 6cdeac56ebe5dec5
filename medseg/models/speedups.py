"""Training speed-ups for SAM image encoders, applied to built models without editing upstream code.

- Fused attention: segment-anything's ViT ``Attention`` computes ``softmax(q k^T * scale + rel-pos)``
  with explicit matrices. ``use_fused_attention`` routes the same computation through
  ``torch.nn.functional.scaled_dot_product_attention`` with the decomposed relative-position terms
  as an additive mask, so the (tokens x tokens) probabilities and their gradients are never stored
  by autograd (memory-efficient / flash kernels where the device has them). Same weights, same
  state-dict keys, same outputs up to rounding.
- Activation checkpointing: ``use_activation_checkpointing`` recomputes each encoder block's
  activations in the backward pass instead of storing them (ViT blocks; TinyViT's blocks in every
  stage). It only acts while gradients are being recorded.
"""

from __future__ import annotations

import types
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint


def relative_position_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                           size: tuple[int, int]) -> torch.Tensor:
    """SAM's decomposed relative-position term as an additive attention mask.

    ``q`` is (B, heads, H*W, dim) (unscaled, as in SAM); returns (B, heads, H*W, H*W)."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    height, width = size
    batch, heads, _, dim = q.shape
    grid = q.reshape(batch * heads, height, width, dim)
    along_h = torch.einsum("bhwc,hkc->bhwk", grid, get_rel_pos(height, height, rel_pos_h))
    along_w = torch.einsum("bhwc,wkc->bhwk", grid, get_rel_pos(width, width, rel_pos_w))
    bias = along_h[:, :, :, :, None] + along_w[:, :, :, None, :]
    return bias.reshape(batch, heads, height * width, height * width)


def _fused_attention_forward(attention: nn.Module, x: torch.Tensor) -> torch.Tensor:
    batch, height, width, _ = x.shape
    heads = attention.num_heads
    qkv = attention.qkv(x).reshape(batch, height * width, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each (B, heads, tokens, dim)
    bias = None
    if attention.use_rel_pos:
        bias = relative_position_bias(q, attention.rel_pos_h, attention.rel_pos_w, (height, width)).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=attention.scale)
    return attention.proj(out.transpose(1, 2).reshape(batch, height, width, -1))


def use_fused_attention(model: nn.Module) -> int:
    """Switch every segment-anything ViT attention in ``model`` to the fused kernel; returns how many."""
    from segment_anything.modeling.image_encoder import Attention

    switched = 0
    for module in model.modules():
        if isinstance(module, Attention):
            module.forward = types.MethodType(_fused_attention_forward, module)
            switched += 1
    return switched


def _checkpointed(block: nn.Module, original: object, *args: torch.Tensor) -> torch.Tensor:
    if block.training and torch.is_grad_enabled():
        return checkpoint(original, *args, use_reentrant=False)
    return original(*args)


def _encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    if hasattr(encoder, "blocks"):  # segment-anything ViT
        return list(encoder.blocks)
    return [block for layer in getattr(encoder, "layers", []) for block in layer.blocks]  # TinyViT


def use_activation_checkpointing(model: nn.Module) -> int:
    """Recompute the image encoder's block activations in backward; returns the number of blocks."""
    blocks = _encoder_blocks(model.image_encoder)
    for block in blocks:
        block.forward = partial(_checkpointed, block, block.forward)
    return len(blocks)
