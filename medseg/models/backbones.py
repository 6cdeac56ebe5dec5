"""Registry of SAM backbones, built with random init at any input size divisible by 16."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

PROMPT_EMBED_DIM = 256
PATCH_SIZE = 16
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
# input normalisation of the 0-255 slices: SAM's (ImageNet mean and std), or MedSAM's (scaled to [0, 1])
NORMALISATIONS = {"sam": (PIXEL_MEAN, PIXEL_STD), "medsam": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))}
INIT_NORMALISATION = {"medsam": "medsam"}  # initial weights trained with another normalisation than SAM's


def normalisation_for(init: str) -> str:
    """The input normalisation the initial weights ``init`` were trained with (SAM's unless listed)."""
    return INIT_NORMALISATION.get(init, "sam")


def _tiny_vit_class() -> type[nn.Module]:
    with warnings.catch_warnings():  # mobile_sam re-registers timm's TinyViT names via old timm paths
        warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        from mobile_sam.modeling import TinyViT

    class SizedTinyViT(TinyViT):
        """MobileSAM's TinyViT without its hard-coded 64x64 (1024-input) feature reshape."""

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch_embed(x)
            for layer in self.layers:
                x = layer(x)
            batch, _, channels = x.size()
            side = self.img_size // PATCH_SIZE
            x = x.view(batch, side, side, channels).permute(0, 3, 1, 2)
            return self.neck(x)

    return SizedTinyViT


def build_vit_t_encoder(image_size: int) -> nn.Module:
    """MobileSAM's ViT-T (TinyViT-5M) image encoder, as configured in ``mobile_sam.build_sam``."""
    return _tiny_vit_class()(
        img_size=image_size, in_chans=3, num_classes=1000, embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2], num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4.0,
        drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
        local_conv_size=3, layer_lr_decay=0.8,
    )


def _sam_vit_encoder(embed_dim: int, depth: int, num_heads: int, global_attn: list[int],
                     image_size: int) -> nn.Module:
    """SAM's ViT image encoder as configured in ``segment_anything.build_sam``."""
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        depth=depth, embed_dim=embed_dim, img_size=image_size, mlp_ratio=4,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), num_heads=num_heads, patch_size=PATCH_SIZE,
        qkv_bias=True, use_rel_pos=True, global_attn_indexes=global_attn, window_size=14,
        out_chans=PROMPT_EMBED_DIM,
    )


def build_vit_b_encoder(image_size: int) -> nn.Module:
    """SAM ViT-B (sam_vit_b_01ec64.pth; MedSAM's medsam_vit_b.pth has the same layout)."""
    return _sam_vit_encoder(768, 12, 12, [2, 5, 8, 11], image_size)


def build_vit_h_encoder(image_size: int) -> nn.Module:
    """SAM ViT-H (sam_vit_h_4b8939.pth)."""
    return _sam_vit_encoder(1280, 32, 16, [7, 15, 23, 31], image_size)


ENCODER_BUILDERS: dict[str, Callable[[int], nn.Module]] = {
    "vit_h": build_vit_h_encoder,
    "vit_b": build_vit_b_encoder,
    "vit_t": build_vit_t_encoder,
}


def build_prompt_encoder(image_size: int) -> nn.Module:
    from segment_anything.modeling import PromptEncoder

    side = image_size // PATCH_SIZE
    return PromptEncoder(
        embed_dim=PROMPT_EMBED_DIM, image_embedding_size=(side, side),
        input_image_size=(image_size, image_size), mask_in_chans=16,
    )


def build_mask_decoder(num_classes: int) -> nn.Module:
    """SAM's mask decoder with one multimask output per class (background included)."""
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer

    return MaskDecoder(
        num_multimask_outputs=num_classes,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM, iou_head_depth=3, iou_head_hidden_dim=256,
    )
