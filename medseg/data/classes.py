"""The classes a model learns: the dataset's own label map (``ingest.json``), optionally narrowed.

Every dataset brings its classes (the registry's label map, recorded by ingest), so binary and
multi-class datasets share one params.yaml. ``finetune.classes.<alias>`` may narrow them to a subset
of the dataset's foreground classes (by name): the others become background, and the kept ones are
renumbered 1..K in label order. The exported model records the names and the stored label value of
each of its classes, so evaluation and deployments map masks the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError

MAX_LABEL = 255  # masks are stored as uint8


@dataclass(frozen=True)
class ClassMap:
    """Output class ``i`` is called ``names[i]`` and is stored as label ``values[i]`` (0: background)."""

    names: tuple[str, ...]
    values: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def lookup(self) -> np.ndarray | None:
        """A table from stored label to output class (labels not kept map to 0); None when it is the identity."""
        if self.values == tuple(range(len(self.values))):
            return None
        table = np.zeros(MAX_LABEL + 1, dtype=np.uint8)
        for index, value in enumerate(self.values):
            table[value] = index
        return table

    def to_metadata(self, mode: str) -> dict[str, Any]:
        """What an exported model records: its output classes' names, and how it reads masks."""
        outputs = list(self.names) if mode == "automated" else [self.names[0], "prompted object"]
        return {"classes": outputs, "dataset_classes": {"names": list(self.names), "values": list(self.values)}}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ClassMap | None:
        """The map an exported model recorded; None for models that record none (masks read as stored)."""
        recorded = metadata.get("dataset_classes")
        if not isinstance(recorded, dict):
            return None
        names, values = recorded.get("names"), recorded.get("values")
        if not (isinstance(names, list) and isinstance(values, list) and len(names) == len(values) >= 2
                and all(isinstance(v, int) and 0 <= v <= MAX_LABEL for v in values)):
            return None
        return cls(tuple(str(n) for n in names), tuple(values))


def dataset_labels(summary: dict[str, Any], source: str | Path) -> dict[int, str]:
    """The label map ``ingest.json`` recorded: stored value -> class name."""
    try:
        labels = {int(k): str(v) for k, v in summary["labels"].items()}
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise MedsegError("ingest summary has no valid 'labels' map; re-run `medseg ingest`", source) from exc
    if any(not 0 <= k <= MAX_LABEL for k in labels):
        raise MedsegError(f"label values must lie in 0..{MAX_LABEL}: {sorted(labels)}", source)
    return labels


def resolve_classes(labels: dict[int, str], keep: Sequence[str] | None, dataset: str) -> ClassMap:
    """The dataset's classes, narrowed to the foreground classes named in ``keep`` (None: all)."""
    foreground = sorted(k for k in labels if k > 0)
    if keep:
        known = [labels[k] for k in foreground]
        unknown = [name for name in keep if name not in known]
        if unknown:
            raise MedsegError(f"finetune.classes.{dataset}: {unknown} not among the dataset's classes {known}")
        foreground = [k for k in foreground if labels[k] in keep]
    if not foreground:
        raise MedsegError(f"dataset '{dataset}' has no foreground class in its label map {labels}")
    return ClassMap((labels.get(0, "background"), *(labels[k] for k in foreground)), (0, *foreground))


class MappedMasks:
    """Masks read through a label table (``lookup[mask]``), lazily, row by row."""

    def __init__(self, masks: np.ndarray, lookup: np.ndarray) -> None:
        self.masks, self.table = masks, lookup
        self.shape, self.dtype = masks.shape, np.dtype(np.uint8)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.table[np.asarray(self.masks[index])]
