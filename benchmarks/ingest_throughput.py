"""Ingestion throughput (slices/s) on a generated phantom, and where the time goes.

Runs the real ``ingest_dataset`` on a phantom written to a temporary folder, once with one worker
(the baseline) and once with ``--workers``, and times the decoding share (reading volumes) against
the rest (intensity scaling, slicing, resizing, writing). Prints ratios measured in this run.

    .venv/bin/python benchmarks/ingest_throughput.py --patients 16 --shape 128 128 48 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from medseg.data.adapters import adapter_for
from medseg.data.ingest import ingest_dataset
from medseg.data.registry import get_spec
from medseg.data.sample import PhantomSpec, write_sample
from medseg.params import load_params


def _time_ingest(raw: Path, out: Path, params: dict, workers: int) -> tuple[float, int]:
    started = time.perf_counter()
    summary = ingest_dataset("sample", raw, out, {**params["ingest"], "workers": workers}, int(params["seed"]))
    return time.perf_counter() - started, int(summary["num_slices"])


def _time_decoding(raw: Path, max_voxels: int) -> float:
    spec = get_spec("sample")
    adapter = adapter_for(spec.adapter)
    started = time.perf_counter()
    for case in adapter.discover(raw, spec):
        adapter.load(case, spec, max_voxels)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 48])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    spec = PhantomSpec.from_params({**params["sample"], "num_patients": args.patients, "shape": args.shape})
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        write_sample(raw, spec, int(params["seed"]))
        _time_ingest(raw, Path(tmp) / "warmup", params, 1)  # imports and file cache
        serial, slices = _time_ingest(raw, Path(tmp) / "serial", params, 1)
        parallel, _ = _time_ingest(raw, Path(tmp) / "parallel", params, args.workers)
        decoding = _time_decoding(raw, int(params["ingest"]["max_voxels"]))
    print(f"dataset: {args.patients} phantom volumes of {tuple(args.shape)} -> {slices} slices "
          f"of {params['ingest']['image_size']}px")
    print(f"1 worker : {serial:6.2f} s  {slices / serial:7.1f} slices/s (baseline)")
    print(f"{args.workers} workers: {parallel:6.2f} s  {slices / parallel:7.1f} slices/s  "
          f"speed-up x{serial / parallel:.2f}")
    print(f"time share of decoding (reading volumes) in the 1-worker run: {decoding / serial:.0%}; "
          f"the rest (scaling, slicing, resizing, writing): {1 - decoding / serial:.0%}")


if __name__ == "__main__":
    main()
