"""Safe checkpoint I/O: official SAM weights in, self-contained medseg checkpoints out."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from medseg.atomic import atomic_file
from medseg.errors import MedsegError
from medseg.models.segmenter import SamSegmenter

CHECKPOINT_FORMAT = "medseg.sam/1"
_DECODER_TOKEN_KEYS = ("mask_decoder.mask_tokens.weight", "mask_decoder.iou_prediction_head.layers.2")


def safe_load(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("checkpoint not found", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickled code, foreign format
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise MedsegError(f"cannot load checkpoint safely ({reason[:200]})", path) from exc


def _fit_decoder_tokens(state: dict[str, torch.Tensor], model: SamSegmenter) -> dict[str, torch.Tensor]:
    """Adapt the decoder's per-token tensors of a stock checkpoint (4 mask tokens) to
    ``num_classes + 1`` tokens: keep the first rows, drop surplus hypernetwork MLPs, and leave
    extra tokens at their fresh initialisation."""
    own = model.state_dict()
    fitted = {}
    for key, value in state.items():
        if key.startswith("mask_decoder.output_hypernetworks_mlps.") and key not in own:
            continue
        if key.startswith(_DECODER_TOKEN_KEYS) and key in own and own[key].shape != value.shape:
            merged = own[key].clone()
            rows = min(merged.shape[0], value.shape[0])
            merged[:rows] = value[:rows]
            value = merged
        fitted[key] = value
    return fitted


def load_sam_weights(model: SamSegmenter, path: str | Path) -> None:
    """Load official SAM/MobileSAM/MedSAM weights into ``model``; mismatches are listed."""
    state = safe_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedsegError("not a state dict of tensors", path)
    state = _fit_decoder_tokens(state, model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise MedsegError(
            f"does not match backbone '{model.backbone}': missing [{head(missing)}], "
            f"unexpected [{head(unexpected)}], shape mismatch [{head(wrong_shape)}]", path)
    model.load_state_dict(state)


def build_model(backbone: str, image_size: int, num_classes: int, checkpoint: str | None) -> SamSegmenter:
    """A segmenter with official weights, or random init with a loud warning."""
    model = SamSegmenter(backbone, image_size, num_classes)
    if checkpoint:
        load_sam_weights(model, checkpoint)
    else:
        warnings.warn(
            f"NO SAM CHECKPOINT CONFIGURED: {backbone} starts from RANDOM weights; results say "
            "nothing about SAM. Set finetune.checkpoint in params.yaml to a downloaded checkpoint.",
            stacklevel=2,
        )
    return model


def export_checkpoint(model: SamSegmenter, path: str | Path, metadata: dict[str, Any]) -> None:
    """Write a self-contained checkpoint (architecture, preprocessing, weights) atomically."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.backbone,
        "image_size": model.image_size,
        "num_classes": model.num_classes,
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "metadata": metadata,
        "state_dict": model.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_exported(path: str | Path) -> tuple[SamSegmenter, dict[str, Any]]:
    """Rebuild a model from an exported checkpoint; returns it in eval mode with its metadata."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MedsegError(f"not a {CHECKPOINT_FORMAT} checkpoint", path)
    model = SamSegmenter(payload["backbone"], int(payload["image_size"]), int(payload["num_classes"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise MedsegError(f"weights do not fit the recorded architecture ({exc})", path) from exc
    model.eval()
    return model, dict(payload.get("metadata", {}))
