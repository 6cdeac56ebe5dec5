"""Validation time of a large ingested dataset (target: a 10,000-row manifest in under 30 s).

Builds a synthetic ingested dataset (random uint8 slices and masks, a manifest with patients and a
7:1:2 split) and runs the real gate (great-expectations checks + evidently drift) on 1,000 rows
(the baseline) and on ``--rows`` rows, printing times and the scaling ratio.

    .venv/bin/python benchmarks/validate_manifest.py --rows 10000 --size 256
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medseg.params import load_params
from medseg.quality.validate import validate


def _dataset(folder: Path, rows: int, size: int, rng: np.random.Generator) -> Path:
    folder.mkdir(parents=True)
    masks = np.zeros((rows, size, size), dtype=np.uint8)
    masks[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    np.save(folder / "images.npy", rng.integers(0, 256, (rows, size, size), dtype=np.uint8))
    np.save(folder / "masks.npy", masks)
    patients = np.arange(rows) // 50
    split = np.select([patients % 10 < 7, patients % 10 < 8], ["train", "val"], "test")
    manifest = pd.DataFrame({
        "row": np.arange(rows), "dataset": "bench", "patient": [f"p{p:05d}" for p in patients],
        "case": [f"p{p:05d}" for p in patients], "image_file": "x.nii.gz", "label_file": "y.nii.gz",
        "slice_index": np.arange(rows) % 50, "split": split, "fewshot": "", "height": size, "width": size,
        "intensity_mean": rng.normal(100, 10, rows), "intensity_std": rng.normal(30, 3, rows),
        "mask_fraction": np.full(rows, 1 / 16), "labels_present": "0,1"})
    manifest.to_parquet(folder / "manifest.parquet", index=False)
    (folder / "ingest.json").write_text(json.dumps({"labels": {"0": "background", "1": "x"},
                                                   "grouping": "patient", "labeled": True}))
    return folder


def _time(folder: Path, settings: dict) -> float:
    started = time.perf_counter()
    validate("bench", folder, folder.parent / f"{folder.name}_out", settings)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    params = load_params("params.yaml")
    settings = {**params["validate"], "image_size": args.size, "drop_empty_slices": True,
                "split_fractions": params["ingest"]["split_fractions"]}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        small = _dataset(Path(tmp) / "small", 1_000, args.size, rng)
        large = _dataset(Path(tmp) / "large", args.rows, args.size, rng)
        _time(small, settings)  # warm-up: imports
        baseline, measured = _time(small, settings), _time(large, settings)
    print(f"1,000 rows: {baseline:6.2f} s (baseline)")
    print(f"{args.rows:,} rows: {measured:6.2f} s  x{measured / baseline:.1f} the baseline for "
          f"x{args.rows / 1000:.0f} the rows; target < 30 s: {'met' if measured < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
