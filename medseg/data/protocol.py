"""The ingestion protocol as a record: how a dataset's images became the slices a model was trained on.

``medseg ingest`` writes it into ``ingest.json`` (``protocol``), training copies it into the exported
model's metadata, and ``medseg predict`` replays it on new scans, so a model sees new images exactly as
it saw its training slices::

    {"version": 1, "orientation": "RAS+" | "file", "slice_axis": 0-2, "image_size": S,
     "intensity": "window" | "percentile_clip" | "min_max",
     "intensity_window": [low, high] | null, "percentile_clip": [low, high] | null,
     "resize": {"image": "bilinear", "mask": "nearest"}, "colour": "mean of RGB", "channels": 3,
     "max_voxels": N}

Only the intensity rule in effect is recorded (a window wins over a percentile clip, as in ``to_uint8``);
``channels`` is the model input (the grayscale slice repeated), ``max_voxels`` the size guard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError

VERSION = 1
ORIENTATIONS = ("RAS+", "file")
RESIZE = {"image": "bilinear", "mask": "nearest"}
COLOUR = "mean of RGB"
CHANNELS = 3
Pair = tuple[float, float]


@dataclass(frozen=True)
class Protocol:
    """How images become model inputs: orientation, slice axis, intensities to 0-255, input size."""

    orientation: str
    slice_axis: int
    image_size: int
    intensity_window: Pair | None
    percentile_clip: Pair | None
    max_voxels: int

    @property
    def intensity(self) -> str:
        """The rule in effect: ``window``, ``percentile_clip`` or ``min_max`` (per volume or image)."""
        return "window" if self.intensity_window else "percentile_clip" if self.percentile_clip else "min_max"

    def to_record(self) -> dict[str, Any]:
        """The JSON record (``ingest.json`` ``protocol``, a model's ``metadata.protocol``)."""
        window = list(self.intensity_window) if self.intensity_window else None
        clip = list(self.percentile_clip) if self.percentile_clip and not window else None
        return {"version": VERSION, "orientation": self.orientation, "slice_axis": self.slice_axis,
                "image_size": self.image_size, "intensity": self.intensity, "intensity_window": window,
                "percentile_clip": clip, "resize": dict(RESIZE), "colour": COLOUR, "channels": CHANNELS,
                "max_voxels": self.max_voxels}

    @classmethod
    def from_record(cls, record: Any, source: str | Path) -> Protocol:
        """A recorded protocol, checked field by field (one-line error naming ``source`` and the field)."""
        if not isinstance(record, dict) or record.get("version") != VERSION:
            raise MedsegError(f"recorded protocol is not a version {VERSION} protocol record", source)
        window = _pair(record, "intensity_window", source)
        clip = _pair(record, "percentile_clip", source)
        protocol = cls(orientation=_field(record, "orientation", lambda v: v in ORIENTATIONS, source),
                       slice_axis=_field(record, "slice_axis", lambda v: v in (0, 1, 2), source),
                       image_size=_field(record, "image_size", lambda v: _whole(v) and v >= 16, source),
                       intensity_window=window, percentile_clip=clip,
                       max_voxels=_field(record, "max_voxels", lambda v: _whole(v) and v >= 1, source))
        if record.get("intensity") != protocol.intensity:
            raise MedsegError(f"recorded protocol field 'intensity' is {record.get('intensity')!r} but its settings "
                              f"say {protocol.intensity!r}", source)
        return protocol


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(record: dict[str, Any], name: str, valid: Any, source: str | Path) -> Any:
    value = record.get(name)
    if not valid(value):
        raise MedsegError(f"recorded protocol field '{name}' is invalid ({value!r:.60})", source)
    return value


def _pair(record: dict[str, Any], name: str, source: str | Path) -> Pair | None:
    value = record.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, int | float) for v in value)
            or not value[0] < value[1]):
        raise MedsegError(f"recorded protocol field '{name}' must be [low, high] with low < high, got {value!r:.60}",
                          source)
    return float(value[0]), float(value[1])


def training_data_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """What an exported model records of its ingested data (``ingest.json``): the protocol (when the ingest
    recorded one) and whether the data were synthetic."""
    facts: dict[str, Any] = {"synthetic_data": bool(summary.get("synthetic"))}
    if isinstance(summary.get("protocol"), dict):
        facts["protocol"] = summary["protocol"]
    return facts
