"""``medseg ingest``: a raw dataset -> memory-mappable slice arrays + a parquet manifest.

Output directory::

    images.npy      uint8 (N, S, S) grayscale slices, 0-255 (replicated to 3 channels at load)
    masks.npy       uint8 (N, S, S) label values per the dataset's label map
    manifest.parquet one row per slice: dataset, patient, case, source files, slice index, split, ...
    ingest.json     summary: grouping, counts per split, label map, image size, synthetic flag
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medseg.atomic import atomic_dir
from medseg.data.msd import CasePair, read_msd_pairs
from medseg.data.slices import SliceProtocol, volume_to_slices
from medseg.data.split import SPLITS, assign_splits
from medseg.data.volumes import load_pair
from medseg.errors import MedsegError


def protocol_from_params(ingest_params: dict[str, Any]) -> SliceProtocol:
    window = ingest_params.get("intensity_window")
    return SliceProtocol(
        image_size=int(ingest_params["image_size"]),
        slice_axis=int(ingest_params["slice_axis"]),
        intensity_window=(float(window[0]), float(window[1])) if window else None,
        drop_empty_slices=bool(ingest_params["drop_empty_slices"]),
    )


def _case_rows(
    dataset: str, case: CasePair, raw_dir: Path, split: str, images: np.ndarray,
    masks: np.ndarray, indices: np.ndarray,
) -> list[dict[str, Any]]:
    rows = []
    for image, mask, index in zip(images, masks, indices, strict=True):
        rows.append({
            "dataset": dataset,
            "patient": case.patient_id,
            "case": case.case_id,
            "image_file": str(case.image.relative_to(raw_dir.resolve())),
            "label_file": str(case.label.relative_to(raw_dir.resolve())),
            "slice_index": int(index),
            "split": split,
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "intensity_mean": float(image.mean()),
            "intensity_std": float(image.std()),
            "mask_fraction": float((mask > 0).mean()),
            "labels_present": ",".join(str(v) for v in np.unique(mask)),
        })
    return rows


def ingest_msd(
    dataset: str, raw_dir: str | Path, out_dir: str | Path, ingest_params: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Ingest an MSD-layout dataset; writes ``out_dir`` atomically and returns the summary."""
    import pandas as pd
    from tqdm import tqdm

    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise MedsegError("raw dataset directory not found", raw_dir)
    protocol = protocol_from_params(ingest_params)
    pairs, label_map = read_msd_pairs(raw_dir)
    fractions = tuple(float(f) for f in ingest_params["split_fractions"])
    splits = assign_splits([p.patient_id for p in pairs], fractions, seed)  # type: ignore[arg-type]
    all_images, all_masks, rows = [], [], []
    for case in tqdm(pairs, desc=f"ingest {dataset}", unit="volume"):
        image, label = load_pair(case.image, case.label, int(ingest_params["max_voxels"]))
        unknown = sorted(set(np.unique(label).tolist()) - set(label_map))
        if unknown:
            raise MedsegError(f"label values {unknown} are not in dataset.json labels", case.label)
        images, masks, indices = volume_to_slices(image, label, protocol)
        all_images.append(images)
        all_masks.append(masks)
        rows += _case_rows(dataset, case, raw_dir, splits[case.patient_id], images, masks, indices)
    if not rows:
        raise MedsegError("no slices left after dropping empty masks", raw_dir)
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "row", np.arange(len(manifest)))
    summary = _summary(dataset, raw_dir, manifest, label_map, protocol)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / "images.npy", np.concatenate(all_images))
        np.save(tmp / "masks.npy", np.concatenate(all_masks))
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        (tmp / "ingest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(
    dataset: str, raw_dir: Path, manifest: Any, label_map: dict[int, str], protocol: SliceProtocol
) -> dict[str, Any]:
    synthetic = (raw_dir / "SYNTHETIC.txt").is_file()
    return {
        "dataset": dataset,
        "grouping": "patient",
        "synthetic": synthetic,
        "image_size": protocol.image_size,
        "channels_stored": 1,
        "labels": {str(k): v for k, v in sorted(label_map.items())},
        "num_slices": len(manifest),
        "slices_per_split": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "patients_per_split": {
            s: int(manifest.loc[manifest["split"] == s, "patient"].nunique()) for s in SPLITS
        },
    }
