"""Raw mask values -> target classes, per dataset (the registry's ``mask_values`` rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError


def map_mask(raw: np.ndarray, rule: Any, classes: dict[int, str], path: Path) -> np.ndarray:
    """Apply a mask rule; the result is uint8 and only holds values of ``classes``.

    Rules: ``identity`` (values are the classes), ``{map: {raw: class}}`` (every raw value must be
    listed), ``{ranges: [[low, high, class], ...]}`` (inclusive intensity ranges, e.g. CHAOS PNGs),
    ``{threshold: t}`` (binary: raw > t, for interpolated masks)."""
    if not np.all(np.isfinite(raw)):
        raise MedsegError("mask contains NaN or infinite values", path)
    if rule in (None, "identity"):
        mapped = _identity(raw, path)
    elif isinstance(rule, dict) and "map" in rule:
        mapped = _values(raw, {float(k): int(v) for k, v in rule["map"].items()}, path)
    elif isinstance(rule, dict) and "ranges" in rule:
        mapped = _ranges(raw, rule["ranges"], path)
    elif isinstance(rule, dict) and "threshold" in rule:
        mapped = (raw > float(rule["threshold"])).astype(np.uint8)
    else:
        raise MedsegError(f"unknown mask rule {rule!r}", path)
    unknown = sorted(set(np.unique(mapped).tolist()) - set(classes))
    if unknown:
        raise MedsegError(f"mask values {unknown} are not in the label map {sorted(classes)}", path)
    return mapped


def _identity(raw: np.ndarray, path: Path) -> np.ndarray:
    if np.any(raw < 0) or np.any(raw != np.round(raw)) or raw.max(initial=0) > 255:
        raise MedsegError("mask has negative, non-integer or above-255 values", path)
    return raw.astype(np.uint8)


def _values(raw: np.ndarray, table: dict[float, int], path: Path) -> np.ndarray:
    present = np.unique(raw)
    unknown = [v for v in present.tolist() if v not in table]
    if unknown:
        raise MedsegError(f"mask values {unknown[:5]} are not in the dataset's value map", path)
    mapped = np.zeros(raw.shape, dtype=np.uint8)
    for value in present.tolist():
        mapped[raw == value] = table[value]
    return mapped


def _ranges(raw: np.ndarray, ranges: list[list[float]], path: Path) -> np.ndarray:
    mapped = np.zeros(raw.shape, dtype=np.uint8)
    covered = raw == 0
    for low, high, cls in ranges:
        inside = (raw >= low) & (raw <= high)
        mapped[inside] = int(cls)
        covered |= inside
    if not covered.all():
        raise MedsegError(f"mask values {np.unique(raw[~covered])[:5].tolist()} fall in no range", path)
    return mapped
