"""The open inference protocol (v2) request ``medseg serve`` takes, decoded and checked.

Inputs (by name; any other name is refused):

- ``image``: the slice(s) as stored, any numeric datatype, shape ``[H, W]`` or ``[N, H, W]``. The N slices are
  N separate 2-D images, each scaled to 0-255 on its own (as ``medseg predict`` treats a folder of images),
  unless the request parameter ``volume`` is ``true``: then they are one scan's slices along the model's
  slice axis, scaled together (as ingest scales a volume). A recorded window (CT) scales alike either way.
- ``boxes`` (box models) ``[K, 4]``: ``x0, y0, x1, y1`` inclusive corners, or ``points`` (point models)
  ``[K, 2]``: ``x, y``; 0-based pixel indices in the image as sent (``x`` the column, ``y`` the row).
- ``prompt_image`` (optional, whole numbers ``[K]``, default 0): the slice of ``image`` each prompt lies on.
- ``prompt_label`` (optional, whole numbers ``[K]`` in 1..255, default 1): the value its object gets in the mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.errors import MedsegError

IMAGE, BOXES, POINTS, PROMPT_IMAGE, PROMPT_LABEL = "image", "boxes", "points", "prompt_image", "prompt_label"
NAMES = (IMAGE, BOXES, POINTS, PROMPT_IMAGE, PROMPT_LABEL)
WHOLE = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
NUMERIC = (*WHOLE, "FP16", "FP32", "FP64")
PROMPT_WIDTH = {"box": (BOXES, 4), "point": (POINTS, 2)}
MAX_PROMPTS = 4096  # per request


@dataclass(frozen=True)
class Tensor:
    """One request input as the protocol declares it; ``decode`` reads its data (a numpy array of ``shape``)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    decode: Callable[[], np.ndarray]


@dataclass(frozen=True)
class Prompt:
    """One prompt on slice ``image`` of the request: ``(x, y)`` or ``(x0, y0, x1, y1)`` in its pixels."""

    image: int
    coords: np.ndarray
    label: int


@dataclass(frozen=True)
class Request:
    """A checked request: float32 slices (N, H, W), whether they are one volume, and the prompts (None:
    automated)."""

    images: np.ndarray
    volume: bool
    prompts: list[Prompt] | None


def parse_request(tensors: list[Tensor], parameters: dict[str, Any], mode: str, max_voxels: int) -> Request:
    """The request's image and prompts for a model of ``mode``; one clear line for what is wrong."""
    by_name: dict[str, Tensor] = {}
    for tensor in tensors:
        if tensor.name not in NAMES:
            raise MedsegError(f"unknown input '{tensor.name:.40}' (inputs: {', '.join(NAMES)})")
        if tensor.name in by_name:
            raise MedsegError(f"input '{tensor.name}' given twice")
        by_name[tensor.name] = tensor
    volume = _volume_flag(parameters)
    if IMAGE not in by_name:
        raise MedsegError("missing input 'image': the slice(s) to segment, [H, W] or [N, H, W], any numeric datatype")
    images = _image(by_name[IMAGE], max_voxels)
    prompts = _prompts(by_name, mode, images.shape, volume)
    return Request(images, volume, prompts)


def _volume_flag(parameters: dict[str, Any]) -> bool:
    unknown = sorted(set(parameters) - {"volume", "binary_data_output"})
    if unknown:
        raise MedsegError(f"unknown request parameter(s) {unknown} (known: volume, binary_data_output)")
    volume = parameters.get("volume", False)
    if not isinstance(volume, bool):
        raise MedsegError(f"request parameter 'volume' must be true or false, got {volume!r:.40}")
    return volume


def _decoded(tensor: Tensor, datatypes: tuple[str, ...], ranks: tuple[int, ...], limit: int) -> np.ndarray:
    """A tensor's data after checking its datatype, rank and size (before decoding), then its values' finiteness."""
    if tensor.datatype not in datatypes:
        raise MedsegError(f"input '{tensor.name}' has datatype {tensor.datatype!r:.20}; expected one of "
                          f"{', '.join(datatypes)}")
    if len(tensor.shape) not in ranks or any(n < 1 for n in tensor.shape):
        wanted = " or ".join(f"{rank}-D" for rank in ranks)
        raise MedsegError(f"input '{tensor.name}' has shape {list(tensor.shape)}; expected {wanted} with no empty axis")
    if math.prod(tensor.shape) > limit:
        raise MedsegError(f"input '{tensor.name}' is too large: {math.prod(tensor.shape)} values, at most {limit}")
    try:
        array = np.asarray(tensor.decode())
    except (ValueError, TypeError, OverflowError) as exc:
        raise MedsegError(f"input '{tensor.name}': data do not match shape {list(tensor.shape)} and datatype "
                          f"{tensor.datatype} ({exc})") from exc
    if array.shape != tensor.shape:
        raise MedsegError(f"input '{tensor.name}': data have shape {list(array.shape)}, declared {list(tensor.shape)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise MedsegError(f"input '{tensor.name}' contains NaN or infinite values")
    return array


def _image(tensor: Tensor, max_voxels: int) -> np.ndarray:
    array = _decoded(tensor, NUMERIC, (2, 3), max_voxels)
    return (array[None] if array.ndim == 2 else array).astype(np.float32)


def _prompts(by_name: dict[str, Tensor], mode: str, shape: tuple[int, ...], volume: bool) -> list[Prompt] | None:
    given = [name for name in (BOXES, POINTS, PROMPT_IMAGE, PROMPT_LABEL) if name in by_name]
    if mode == "automated":
        if given:
            raise MedsegError(f"the model is automated and takes no prompts; drop input(s) {', '.join(given)}")
        return None
    name, width = PROMPT_WIDTH[mode]
    other = POINTS if name == BOXES else BOXES
    if other in by_name:
        raise MedsegError(f"the model takes {mode} prompts (input '{name}'), not '{other}'")
    if name not in by_name:
        raise MedsegError(f"the model takes {mode} prompts: give input '{name}' FP32 [K, {width}] "
                          f"({'x0, y0, x1, y1' if mode == 'box' else 'x, y'} in the image's pixels)")
    coords = _decoded(by_name[name], NUMERIC, (2,), MAX_PROMPTS * width).astype(np.float64)
    if coords.shape[1] != width:
        raise MedsegError(f"input '{name}' has shape {list(coords.shape)}; expected [K, {width}]")
    count, (images, rows, columns) = len(coords), shape
    on = _per_prompt(by_name.get(PROMPT_IMAGE), count, 0, images - 1, 0)
    labels = _per_prompt(by_name.get(PROMPT_LABEL), count, 1, 255, 1)
    xs, ys = coords[:, 0::2], coords[:, 1::2]
    outside = (xs < 0).any(1) | (xs > columns - 1).any(1) | (ys < 0).any(1) | (ys > rows - 1).any(1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise MedsegError(f"{name}[{first}] {coords[first].tolist()} lies outside the image (width {columns}, "
                          f"height {rows}; 0-based pixel indices)")
    if mode == "box" and ((xs[:, 0] > xs[:, 1]) | (ys[:, 0] > ys[:, 1])).any():
        first = int(np.flatnonzero((xs[:, 0] > xs[:, 1]) | (ys[:, 0] > ys[:, 1]))[0])
        raise MedsegError(f"boxes[{first}] {coords[first].tolist()}: corners must be x0 <= x1 and y0 <= y1")
    unprompted = sorted(set(range(images)) - set(on.tolist()))
    if unprompted and not volume:
        raise MedsegError(f"image {unprompted[0]} of {images} has no prompt; every image needs one (or set the "
                          "request parameter volume: true for one scan's slices)")
    return [Prompt(int(i), c.astype(np.float32), int(v)) for i, c, v in zip(on, coords, labels, strict=True)]


def _per_prompt(tensor: Tensor | None, count: int, low: int, high: int, default: int) -> np.ndarray:
    """``prompt_image`` or ``prompt_label``: one whole number in ``low..high`` per prompt."""
    if tensor is None:
        return np.full(count, default, dtype=np.int64)
    values = _decoded(tensor, WHOLE, (1,), MAX_PROMPTS)
    if values.shape != (count,):
        raise MedsegError(f"input '{tensor.name}' has {len(values)} values; expected one per prompt ({count})")
    if ((values < low) | (values > high)).any():
        raise MedsegError(f"input '{tensor.name}' values must lie in {low}..{high}, got {values.tolist()[:8]}")
    return values.astype(np.int64)
