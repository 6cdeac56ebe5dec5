"""The model's ingestion protocol replayed on a new scan, and its predictions put back in the scan's grid.

A model records the protocol of its training data (``metadata.protocol``, see ``medseg.data.protocol``):
orientation, slice axis, intensity window / percentile clip / min-max to 0-255, input size. A model
exported before that record existed needs the intensity rule on the command line (``--window LOW HIGH``
or ``--min-max``; ``--slice-axis`` when it was not the axial axis 2). 2-D images are always one slice, as
ingest stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.protocol import Protocol
from medseg.errors import MedsegError
from medseg.infer.inputs import Scan

DEFAULT_MAX_VOXELS = 2**27  # ingest.max_voxels' default: 512 x 512 x 512
RESIZE_CHUNK = 32  # slices resized back at a time (bounds the float copy)


@dataclass(frozen=True)
class ProtocolChoice:
    """What the command line says about the protocol: only for models that record none (except the size guard)."""

    window: tuple[float, float] | None = None
    min_max: bool = False
    slice_axis: int | None = None
    max_voxels: int | None = None


def resolve_protocol(metadata: dict[str, Any], image_size: int, path: Path,
                     choice: ProtocolChoice) -> tuple[Protocol, str]:
    """The protocol to replay and where it comes from (``model`` or ``command line``)."""
    if choice.window is not None and choice.min_max:
        raise MedsegError("give --window or --min-max, not both")
    if choice.window is not None and not choice.window[0] < choice.window[1]:
        raise MedsegError(f"--window LOW HIGH needs LOW < HIGH, got {list(choice.window)}")
    recorded = metadata.get("protocol")
    if recorded is not None:
        protocol = Protocol.from_record(recorded, path)
        given = [flag for flag, value in (("--window", choice.window), ("--min-max", choice.min_max),
                                          ("--slice-axis", choice.slice_axis)) if value not in (None, False)]
        if given:
            raise MedsegError(f"the model records its ingestion protocol ({protocol.intensity}, slice axis "
                              f"{protocol.slice_axis}); {' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} "
                              "only to models that record none",
                              path)
        if protocol.image_size != image_size:
            raise MedsegError(f"recorded protocol image_size {protocol.image_size} differs from the model's input "
                              f"size {image_size}", path)
        source = "model"
    else:
        if choice.window is None and not choice.min_max:
            raise MedsegError("the model records no ingestion protocol (exported before medseg recorded it): give "
                              "the intensity scaling of its training data, --window LOW HIGH (e.g. the CT window of "
                              "ingest.overrides) or --min-max (per-volume min-max, ingest's default)", path)
        protocol = Protocol("RAS+", 2 if choice.slice_axis is None else choice.slice_axis, image_size,
                            choice.window, None, DEFAULT_MAX_VOXELS)
        source = "command line"
    if choice.max_voxels is not None:
        protocol = replace(protocol, max_voxels=choice.max_voxels)
    return protocol, source


def slice_axis(scan: Scan, protocol: Protocol) -> int:
    """The axis a scan is sliced along: the protocol's for volumes, the single slice of a 2-D image."""
    return 2 if scan.source.kind == "image" else protocol.slice_axis


def model_slices(scan: Scan, protocol: Protocol) -> np.ndarray:
    """Every slice of the scan as the model's training slices were made: uint8 (N, S, S)."""
    from medseg.data.slices import image_slices

    return image_slices(scan.voxels, protocol.image_size, slice_axis(scan, protocol), protocol.intensity_window,
                        protocol.percentile_clip)


def back_to_scan(labels: np.ndarray, scan: Scan, axis: int) -> np.ndarray:
    """Predicted slices (N, S, S) resized back (nearest) and stacked along ``axis``: a label array of the
    scan's voxel shape (uint8)."""
    import torch
    from torch.nn import functional as F

    shape = tuple(n for index, n in enumerate(scan.voxels.shape) if index != axis)
    out = np.zeros((len(labels), *shape), dtype=np.uint8)
    for start in range(0, len(labels), RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(labels[start : start + RESIZE_CHUNK])).float()
        out[start : start + len(chunk)] = F.interpolate(chunk[None], size=shape, mode="nearest")[0].byte().numpy()
    return np.moveaxis(out, 0, axis)
