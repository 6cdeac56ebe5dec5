"""``medseg ingest``: a registered dataset as downloaded -> memory-mappable slices + a manifest.

Output directory::

    images.npy       uint8 (N, S, S) grayscale slices, 0-255 (replicated to 3 channels at load)
    masks.npy        uint8 (N, S, S) target classes (all zero for unlabeled pretraining sets)
    manifest.parquet one row per slice: dataset, patient, case, source files, slice index, split,
                     few-shot role, size, intensity stats, mask fraction, labels present
    ingest.json      summary: grouping, counts per split, label map, skipped files, synthetic flag,
                     ``orientation`` of the stored slices (``RAS+``: volumes reoriented, a slice indexed by
                     the two other RAS+ axes in order; ``file``: 2D images and .npy stacks as read),
                     ``slice_counts`` (slices kept and dropped per case, cases left without a slice) and
                     ``protocol``, the effective protocol that exported models record and ``medseg predict``
                     replays (``medseg.data.protocol``)
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.adapters import adapter_for
from medseg.data.cases import Case
from medseg.data.fewshot import fewshot_roles
from medseg.data.identity import check_synthetic
from medseg.data.memory import peak_mb, workers_that_fit
from medseg.data.protocol import Protocol
from medseg.data.registry import DatasetSpec, get_spec
from medseg.data.slices import SliceProtocol, volume_to_slices
from medseg.data.split import SPLITS, assign_splits
from medseg.errors import MedsegError
from medseg.outputs import output_dir


@dataclass(frozen=True)
class CaseSlices:
    case: Case
    images: np.ndarray
    masks: np.ndarray
    indices: np.ndarray
    source_slices: int = 0  # slices of the volume before any was dropped


def protocol_for(spec: DatasetSpec, ingest_params: dict[str, Any]) -> SliceProtocol:
    """The slice protocol of a dataset: global ``ingest`` settings, the registry's slice axis, and
    the dataset's entry in ``ingest.overrides``."""
    settings = {**ingest_params, "slice_axis": spec.slice_axis,
                **(ingest_params.get("overrides") or {}).get(spec.alias, {})}
    window, clip = settings.get("intensity_window"), settings.get("percentile_clip")
    return SliceProtocol(
        image_size=int(settings["image_size"]), slice_axis=int(settings["slice_axis"]),
        intensity_window=(float(window[0]), float(window[1])) if window else None,
        percentile_clip=(float(clip[0]), float(clip[1])) if clip else None,
        drop_empty_slices=bool(settings["drop_empty_slices"]),
    )


def _process(job: tuple[Case, DatasetSpec, SliceProtocol, int]) -> CaseSlices:
    case, spec, protocol, max_voxels = job
    import torch

    torch.set_num_threads(1)  # one process per core does the parallelism
    image, mask = adapter_for(spec.adapter).load(case, spec, max_voxels)
    images, masks, indices = volume_to_slices(image, mask, protocol)
    return CaseSlices(case, images, masks, indices, int(image.shape[protocol.slice_axis]))


def _process_safely(job: tuple[Case, DatasetSpec, SliceProtocol, int]) -> CaseSlices | MedsegError:
    try:
        return _process(job)
    except MedsegError as exc:
        return exc


def _run(jobs: list[tuple[Case, DatasetSpec, SliceProtocol, int]], workers: int,
         desc: str) -> list[CaseSlices | MedsegError]:
    from tqdm import tqdm

    if workers <= 1 or len(jobs) <= 1:
        return [_process_safely(job) for job in tqdm(jobs, desc=desc, unit="case")]
    import monai.transforms  # noqa: F401 - imported once here, inherited by the forked workers

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(tqdm(pool.map(_process_safely, jobs, chunksize=1), total=len(jobs), desc=desc, unit="case"))


def _rows(spec: DatasetSpec, result: CaseSlices, raw_dir: Path, split: str) -> list[dict[str, Any]]:
    root = raw_dir.resolve()
    label_files = ";".join(str(p.relative_to(root)) for p in result.case.masks)
    rows = []
    for image, mask, index in zip(result.images, result.masks, result.indices, strict=True):
        rows.append({
            "dataset": spec.alias, "patient": result.case.patient_id, "case": result.case.case_id,
            "image_file": str(result.case.image.relative_to(root)), "label_file": label_files,
            "slice_index": int(index), "split": split, "height": int(image.shape[0]), "width": int(image.shape[1]),
            "intensity_mean": float(image.mean()), "intensity_std": float(image.std()),
            "mask_fraction": float((mask > 0).mean()), "labels_present": ",".join(str(v) for v in np.unique(mask)),
        })
    return rows


def ingest_dataset(alias: str, raw_dir: str | Path, out_dir: str | Path, ingest_params: dict[str, Any],
                   seed: int) -> dict[str, Any]:
    """Ingest a registered dataset; writes ``out_dir`` atomically and returns the summary. The output
    may not overlap the raw data (or any other input) and replaces only an earlier ingest; the raw data
    must be the dataset the alias names (``medseg.data.identity``)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise MedsegError("raw dataset directory not found", raw_dir)
    inputs = [raw_dir, *(ingest_params.get("extra_registries") or [])]
    with output_dir("ingest", out_dir, inputs) as tmp:
        spec = get_spec(alias, ingest_params.get("extra_registries"))
        check_synthetic(spec, raw_dir)
        kept, splits, skipped, protocol, counts = _slices(spec, raw_dir, ingest_params, seed)
        manifest = _manifest(spec, kept, splits, raw_dir, ingest_params, seed)
        summary = _summary(spec, manifest, protocol, skipped, counts)
        summary["orientation"] = _orientation(spec, kept)
        summary["protocol"] = Protocol(summary["orientation"], protocol.slice_axis, protocol.image_size,
                                       protocol.intensity_window, protocol.percentile_clip,
                                       int(ingest_params["max_voxels"])).to_record()
        np.save(tmp / "images.npy", np.concatenate([r.images for r in kept]))
        np.save(tmp / "masks.npy", np.concatenate([r.masks for r in kept]))
        manifest.to_parquet(tmp / "manifest.parquet", index=False)
        (tmp / "ingest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _workers(ingest_params: dict[str, Any]) -> int:
    """The configured workers, fewer when their estimated peaks exceed ``ingest.memory_limit_mb``."""
    wanted = int(ingest_params.get("workers", 1))
    limit = ingest_params.get("memory_limit_mb")
    if limit is None:
        return wanted
    voxels = int(ingest_params["max_voxels"])
    fit = workers_that_fit(voxels, int(limit))
    if fit < wanted:
        print(f"ingest: {fit} worker(s) instead of {wanted}: one worker may need ~{peak_mb(voxels)} MB "
              f"(ingest.max_voxels) and ingest.memory_limit_mb is {limit}")
    return min(wanted, fit)


def _slices(spec: DatasetSpec, raw_dir: Path, ingest_params: dict[str, Any], seed: int,
            ) -> tuple[list[CaseSlices], dict[str, str], list[dict[str, str]], SliceProtocol, dict[str, Any]]:
    """Every case read and sliced (in parallel); bad cases fail the step or are skipped; with the
    slice counts per case."""
    protocol = protocol_for(spec, ingest_params)
    if not spec.labeled:
        protocol = replace(protocol, drop_empty_slices=False)
    cases = adapter_for(spec.adapter).discover(raw_dir, spec)
    splits = assign_splits([c.patient_id for c in cases], tuple(ingest_params["split_fractions"]), seed)
    jobs = [(case, spec, protocol, int(ingest_params["max_voxels"])) for case in cases]
    results = _run(jobs, _workers(ingest_params), f"ingest {spec.alias}")
    skipped = _check_failures(cases, results, ingest_params.get("on_error", "fail"))
    kept = [r for r in results if isinstance(r, CaseSlices) and len(r.images)]
    if not kept:
        raise MedsegError("no slices left after dropping empty masks", raw_dir)
    counts = slice_counts([r for r in results if isinstance(r, CaseSlices)], protocol, spec.labeled)
    _say_dropped(counts)
    return kept, splits, skipped, protocol, counts


def slice_counts(results: list[CaseSlices], protocol: SliceProtocol, labeled: bool) -> dict[str, Any]:
    """Slices kept and dropped per case under the drop rule, and the cases left without any slice."""
    rule = "blank image" if not labeled else ("empty mask" if protocol.drop_empty_slices else "none")
    per_case = {r.case.case_id: {"kept": len(r.indices), "dropped": max(r.source_slices - len(r.indices), 0)}
                for r in results}
    return {"drop_rule": rule, "kept": sum(c["kept"] for c in per_case.values()),
            "dropped": sum(c["dropped"] for c in per_case.values()),
            "cases_without_slices": [case for case, c in per_case.items() if c["kept"] == 0],
            "per_case": per_case}


def _say_dropped(counts: dict[str, Any]) -> None:
    if not counts["dropped"]:
        return
    empty = counts["cases_without_slices"]
    named = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    print(f"ingest: dropped {counts['dropped']} slice(s) ({counts['drop_rule']}), kept {counts['kept']}"
          + (f"; {len(empty)} case(s) had no slice left: {named} (all listed in ingest.json)" if empty else ""))


def _manifest(spec: DatasetSpec, kept: list[CaseSlices], splits: dict[str, str], raw_dir: Path,
              ingest_params: dict[str, Any], seed: int) -> Any:
    import pandas as pd

    manifest = pd.DataFrame([row for r in kept for row in _rows(spec, r, raw_dir, splits[r.case.patient_id])])
    manifest.insert(0, "row", np.arange(len(manifest)))
    manifest["fewshot"] = fewshot_roles(manifest, int(ingest_params.get("fewshot_per_split", 5)), seed)
    return manifest


def _check_failures(cases: list[Case], results: list[CaseSlices | MedsegError],
                    on_error: str) -> list[dict[str, str]]:
    """Fail on the first bad case, or (``on_error: skip``) list the skipped ones for the summary."""
    failures = [(case, r) for case, r in zip(cases, results, strict=True) if isinstance(r, MedsegError)]
    if failures and on_error != "skip":
        raise failures[0][1]
    return [{"case": case.case_id, "problem": error.one_line()} for case, error in failures]


def _orientation(spec: DatasetSpec, kept: list[CaseSlices]) -> str:
    """``RAS+`` for volumes read through the reorienting readers, ``file`` for 2D images and .npy stacks."""
    as_read = spec.adapter == "image_mask_2d" or all(r.case.image.suffix == ".npy" for r in kept)
    return "file" if as_read else "RAS+"


def _summary(spec: DatasetSpec, manifest: Any, protocol: SliceProtocol, skipped: list[dict[str, str]],
             counts: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": spec.alias, "name": spec.name, "grouping": spec.grouping, "labeled": spec.labeled,
        "synthetic": spec.synthetic, "image_size": protocol.image_size, "slice_axis": protocol.slice_axis,
        "channels_stored": 1, "labels": {str(k): v for k, v in sorted(spec.labels.items())},
        "num_slices": len(manifest),
        "slices_per_split": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "patients_per_split": {s: int(manifest.loc[manifest["split"] == s, "patient"].nunique()) for s in SPLITS},
        "skipped": skipped, "slice_counts": counts,
    }
