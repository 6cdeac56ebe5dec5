"""Tables the expectations run on, derived from an ingested dataset (manifest + arrays)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.split import SPLITS, split_counts


@dataclass(frozen=True)
class Ingested:
    manifest: Any  # pandas DataFrame
    images: np.ndarray
    masks: np.ndarray
    summary: dict[str, Any]


def slice_table(data: Ingested) -> Any:
    """One row per slice: manifest fields plus the stored array's size, dtype, value range,
    emptiness and content hash (rows beyond the arrays' length get no array fields)."""
    import pandas as pd

    table = data.manifest.reset_index(drop=True)
    count = min(len(table), len(data.images), len(data.masks))
    stats = {
        "array_height": [data.images.shape[1]] * count, "array_width": [data.images.shape[2]] * count,
        "image_dtype": [str(data.images.dtype)] * count, "mask_dtype": [str(data.masks.dtype)] * count,
        "image_min": [float(data.images[i].min()) for i in range(count)],
        "image_max": [float(data.images[i].max()) for i in range(count)],
        "mask_empty": [not bool(data.masks[i].any()) for i in range(count)],
        "image_hash": [hashlib.sha1(np.ascontiguousarray(data.images[i]).tobytes()).hexdigest()
                       for i in range(count)],
    }
    return pd.concat([table, pd.DataFrame(stats)], axis=1)  # rows beyond the arrays get NaN


def label_table(data: Ingested) -> Any:
    """One row per (slice, label value present in its mask)."""
    import pandas as pd

    rows = [{"row": i, "label_value": int(v)} for i in range(len(data.masks)) for v in np.unique(data.masks[i])]
    return pd.DataFrame(rows, columns=["row", "label_value"])


def patient_split_table(manifest: Any) -> Any:
    """Distinct (patient, split) pairs: a patient appearing twice sits in two splits."""
    return manifest[["patient", "split"]].drop_duplicates().reset_index(drop=True)


def hash_split_table(slices: Any) -> Any:
    """Distinct (image hash, split) pairs: a hash appearing twice is an image shared by two splits."""
    return slices[["image_hash", "split"]].dropna().drop_duplicates().reset_index(drop=True)


def split_table(manifest: Any, fractions: tuple[float, float, float], grouping: str, tolerance: float) -> Any:
    """Per split: slices, units (patients or images), observed and expected unit fraction, and the
    deviation allowed: the tolerance, or more where the splitter itself cannot come closer (few units:
    every split gets at least one, in whole units)."""
    import pandas as pd

    unit = "patient" if grouping == "patient" else "row"
    total_units = max(manifest[unit].nunique(), 1)
    expected = [f / sum(fractions) for f in fractions]
    best = [count / total_units for count in split_counts(total_units, tuple(fractions))]
    rows = []
    for split, wanted, closest in zip(SPLITS, expected, best, strict=True):
        part = manifest[manifest["split"] == split]
        fraction = part[unit].nunique() / total_units
        rows.append({"split": split, "slices": len(part), "units": part[unit].nunique(), "total_units": total_units,
                     "unit": "patient" if unit == "patient" else "image", "fraction": fraction,
                     "expected": wanted, "deviation": abs(fraction - wanted),
                     "allowed": max(tolerance, abs(closest - wanted)) + 1e-9})
    return pd.DataFrame(rows)


def split_detail(table: Any) -> str:
    """What is wrong with the split fractions, per split, and what to change."""
    wrong = table[table["deviation"] > table["allowed"]]
    parts = [f"{r.split} holds {r.units} of {r.total_units} {r.unit}s ({r.fraction:.0%}), expected "
             f"{r.expected:.0%} +/- {r.allowed:.0%}" for r in wrong.itertuples()]
    return "; ".join(parts) + " (re-ingest with other ingest.split_fractions, or raise validate.split_tolerance)"


def source_table(manifest: Any, raw_dir: Path | None) -> Any:
    """Every source file named by the manifest, and whether it exists under the raw root."""
    import pandas as pd

    if raw_dir is None:
        return pd.DataFrame(columns=["file", "exists"])
    names = set(manifest["image_file"]) | {n for cell in manifest["label_file"] for n in str(cell).split(";") if n}
    return pd.DataFrame([{"file": n, "exists": (raw_dir / n).exists()} for n in sorted(names)])


def array_table(data: Ingested) -> Any:
    """Per stored array: its length, the manifest's row count and whether every manifest ``row`` indexes it."""
    import pandas as pd

    rows = data.manifest["row"].to_numpy()
    count = len(data.manifest)
    table = []
    for name, array in (("images.npy", data.images), ("masks.npy", data.masks)):
        in_range = bool(len(rows) == 0 or (rows.min() >= 0 and rows.max() < len(array)))
        table.append({"array": name, "slices": len(array), "manifest_rows": count,
                      "consistent": len(array) == count and in_range})
    return pd.DataFrame(table)
