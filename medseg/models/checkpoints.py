"""Safe checkpoint I/O: official SAM weights in, self-contained medseg checkpoints out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from medseg.atomic import atomic_file
from medseg.errors import MedsegError
from medseg.models.backbones import NORMALISATIONS
from medseg.models.segmenter import MODES, SamSegmenter

CHECKPOINT_FORMAT = "medseg.sam/1"
IMAGE_SIZE_RANGE = (64, 4096)  # input sizes a checkpoint may claim (pixels, multiples of 16)
MAX_CLASSES = 255  # masks are uint8 label maps
_REQUIRED = object()
_DECODER_TOKEN_KEYS = ("mask_decoder.mask_tokens.weight", "mask_decoder.iou_prediction_head.layers.2")


def first_line(exc: BaseException) -> str:
    """An exception's first message line (at most 200 characters), or its type when it has none."""
    text = str(exc).strip()
    if text.startswith("Weights only load failed"):  # torch's advice to load unsafely spans many lines
        return "not a torch file of plain tensors and containers (weights-only load refused it)"
    return text.splitlines()[0][:200] if text else exc.__class__.__name__


def safe_load(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True``; any failure is a one-line error naming the file. ``mmap``: map
    the file instead of reading it (to read a large file's metadata; a file of torch's pre-1.6 format, which
    cannot be mapped, is read whole)."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError("checkpoint not found", path)
    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:
                pass  # not mappable: read it whole below
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickled code, foreign format
        raise MedsegError(f"cannot load checkpoint safely ({first_line(exc)})", path) from exc


def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinite values, naming the first such tensor."""
    for key, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            raise MedsegError(f"tensor '{key}' holds NaN or infinite values", path)


def _tensors(state: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """``state`` checked to be a state dict of finite tensors."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise MedsegError("not a state dict of tensors", path)
    check_finite(state, path)
    return state


def state_of(payload: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict a loaded weights file holds (itself, or under ``state_dict`` or ``model``), checked to be
    finite tensors."""
    state = payload
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return _tensors(state, path)


def _state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    return state_of(safe_load(path), path)


def _fit_decoder_tokens(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Fit a stock decoder (4 mask tokens) to ours: keep the first rows, drop surplus hypernetwork
    MLPs, and leave extra tokens and their hypernetwork MLPs (models of 4 or more classes) at their fresh
    initialisation."""
    for key in own:
        if key.startswith("mask_decoder.output_hypernetworks_mlps.") and key not in state:
            state[key] = own[key].clone()
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
        "normalisation": getattr(model, "normalisation", "sam"),
        "spec": spec,
        "metadata": metadata,
        "state_dict": model.state_dict(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def _field(payload: dict[str, Any], name: str, path: str | Path, valid: Callable[[Any], bool], expected: str,
           default: Any = _REQUIRED) -> Any:
    """A checkpoint field, checked; MedsegError naming the file and the field when missing or invalid."""
    if name not in payload:
        if default is _REQUIRED:
            raise MedsegError(f"checkpoint field '{name}' is missing", path)
        return default
    value = payload[name]
    if not valid(value):
        raise MedsegError(f"checkpoint field '{name}' must be {expected}, got {value!r:.60}", path)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _header(payload: Any, path: str | Path) -> dict[str, Any]:
    """Every field that rebuilding the model reads, validated before anything is built."""
    from medseg.baselines.checkpoints import parse_baseline_spec
    from medseg.models.factory import parse_spec

    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MedsegError(f"not a {CHECKPOINT_FORMAT} checkpoint", path)
    spec = _field(payload, "spec", path, lambda v: isinstance(v, dict), "a dict")
    try:
        backbone = parse_baseline_spec(spec).backbone if "baseline" in spec else parse_spec(spec)[0].backbone
    except MedsegError as exc:
        raise MedsegError(f"checkpoint field 'spec' is invalid ({exc})", path) from exc
    _field(payload, "backbone", path, lambda v: v == backbone, f"'{backbone}' (the spec's)", backbone)
    low, high = IMAGE_SIZE_RANGE
    header = {
        "spec": spec,
        "image_size": _field(payload, "image_size", path, lambda v: _is_int(v) and low <= v <= high and v % 16 == 0,
                             f"an integer multiple of 16 in {low}..{high}"),
        "num_classes": _field(payload, "num_classes", path, lambda v: _is_int(v) and 2 <= v <= MAX_CLASSES,
                              f"an integer in 2..{MAX_CLASSES}"),
        "mode": _field(payload, "mode", path, lambda v: v in MODES, f"one of {list(MODES)}", "automated"),
        "candidates": _field(payload, "candidates", path, lambda v: isinstance(v, bool), "true or false", False),
        "metadata": _field(payload, "metadata", path, lambda v: isinstance(v, dict), "a dict", {}),
        "normalisation": _field(payload, "normalisation", path, lambda v: v in NORMALISATIONS,
                                f"one of {sorted(NORMALISATIONS)}", "sam"),
    }
    _tensors(_field(payload, "state_dict", path, lambda v: isinstance(v, dict), "a dict"), path)
    return header


def exported_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported checkpoint (its run: mode, init, profile...), read without building the model
    (memory-mapped: a large checkpoint is not read whole)."""
    payload = safe_load(path, mmap=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise MedsegError(f"not a {CHECKPOINT_FORMAT} checkpoint", path)
    metadata = _field(payload, "metadata", path, lambda v: isinstance(v, dict), "a dict", {})
    return {**metadata, "mode": _field(payload, "mode", path, lambda v: v in MODES, f"one of {list(MODES)}",
                                       "automated")}


def load_exported(path: str | Path) -> tuple[SamSegmenter, dict[str, Any]]:
    """Rebuild a model (strategy modules included) from an exported checkpoint; returns it in eval
    mode with its metadata. Every field is checked before the model is built."""
    from medseg.models.factory import model_from_spec

    payload = safe_load(path)
    header = _header(payload, path)
    try:
        model = model_from_spec(header["spec"], header["image_size"], header["num_classes"], header["mode"],
                                header["candidates"])
    except MedsegError as exc:  # inconsistent fields (e.g. candidates in automated mode)
        raise MedsegError(exc.problem, path) from exc
    if isinstance(model, SamSegmenter):  # baselines normalise their own way
        model.set_normalisation(header["normalisation"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise MedsegError(f"weights do not fit the recorded architecture ({first_line(exc)})", path) from exc
    model.eval()
    return model, dict(header["metadata"])
