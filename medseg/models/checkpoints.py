"""Safe checkpoint I/O: official SAM weights in, self-contained medseg checkpoints out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

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


def _state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    state = safe_load(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedsegError("not a state dict of tensors", path)
    return state


def _fit_decoder_tokens(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Fit a stock decoder (4 mask tokens) to ours: keep the first rows, drop surplus hypernetwork
    MLPs, and leave extra tokens at their fresh initialisation."""
    for key in list(state):
        if key.startswith("mask_decoder.output_hypernetworks_mlps.") and key not in own:
            del state[key]
        elif key.startswith(_DECODER_TOKEN_KEYS) and key in own and own[key].shape != state[key].shape:
            merged = own[key].clone()
            rows = min(merged.shape[0], state[key].shape[0])
            merged[:rows] = state[key][:rows]
            state[key] = merged


def _fit_positions(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Interpolate ViT position embeddings and relative-position tables of 1024-pixel weights to
    the model's input size (bicubic for the 2D grid, linear for the 1D tables)."""
    for key, value in list(state.items()):
        target = own.get(key)
        if target is None or target.shape == value.shape:
            continue
        if key.endswith("pos_embed") and value.dim() == 4:
            grid = F.interpolate(value.permute(0, 3, 1, 2), size=target.shape[1:3], mode="bicubic",
                                 align_corners=False)
            state[key] = grid.permute(0, 2, 3, 1)
        elif key.endswith(("rel_pos_h", "rel_pos_w")) and value.dim() == 2:
            table = F.interpolate(value.T.unsqueeze(0), size=target.shape[0], mode="linear", align_corners=False)
            state[key] = table.squeeze(0).T


def _check_keys(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: str | Path,
                backbone: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        def head(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise MedsegError(
            f"does not match backbone '{backbone}': missing [{head(missing)}], "
            f"unexpected [{head(unexpected)}], shape mismatch [{head(wrong_shape)}]", path)


def load_sam_weights(model: SamSegmenter, path: str | Path) -> None:
    """Load official SAM / MobileSAM / MedSAM weights into a model without PEFT modules; every
    mismatch is listed and nothing is loaded when there is one."""
    state = dict(_state_dict(path))
    own = model.state_dict()
    _fit_decoder_tokens(state, own)
    _fit_positions(state, own)
    _check_keys(state, own, path, model.backbone)
    model.load_state_dict(state)


def load_encoder_weights(model: SamSegmenter, path: str | Path) -> None:
    """Load image-encoder-only weights (e.g. SSLSAM's MAE-pretrained encoder), with or without the
    ``image_encoder.`` prefix; extra MAE decoder keys are refused like any other mismatch."""
    state = {k.removeprefix("image_encoder."): v for k, v in _state_dict(path).items()}
    own = model.image_encoder.state_dict()
    _fit_positions(state, own)
    _check_keys(state, own, path, model.backbone)
    model.image_encoder.load_state_dict(state)


def export_checkpoint(model: SamSegmenter, path: str | Path, spec: dict[str, Any],
                      metadata: dict[str, Any]) -> None:
    """Write a self-contained checkpoint atomically: ``spec`` (strategy, PEFT placements) plus the
    architecture, preprocessing and weights, so that loading needs no other settings."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "backbone": model.backbone,
        "image_size": model.image_size,
        "num_classes": model.num_classes,
        "mode": model.mode,
        "candidates": model.candidates,
        "pixel_mean": model.pixel_mean.flatten().tolist(),
        "pixel_std": model.pixel_std.flatten().tolist(),
        "spec": spec,
        "metadata": metadata,
        "state_dict": model.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_exported(path: str | Path) -> tuple[SamSegmenter, dict[str, Any]]:
    """Rebuild a model (strategy modules included) from an exported checkpoint; returns it in eval
    mode with its metadata."""
    from medseg.models.factory import model_from_spec

    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MedsegError(f"not a {CHECKPOINT_FORMAT} checkpoint", path)
    model = model_from_spec(payload["spec"], int(payload["image_size"]), int(payload["num_classes"]),
                            payload.get("mode", "automated"), bool(payload.get("candidates", False)))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise MedsegError(f"weights do not fit the recorded architecture ({exc})", path) from exc
    model.eval()
    return model, dict(payload.get("metadata", {}))
