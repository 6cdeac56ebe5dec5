"""``medseg predict`` throughput on a 3-D volume, PyTorch (the baseline) against onnxruntime on the CPU: slices
per second end to end (read, replay the protocol, segment, resize back, write the NIfTI) through predict's one
code path, with ``model.pt`` and with its ``medseg export_onnx`` folder, in the same run on the same volume,
model, batch size and thread count.

The model is a random-init SAM strategy or baseline exported in the one model format (timing does not depend
on the weights) with a min-max protocol, or ``--model`` an exported ``model.pt``; the volume is a synthetic
NIfTI of ``--shape`` (sliced along the last axis). Nothing is downloaded.

    .venv/bin/python benchmarks/predict_onnx.py --strategy vit_t_dec_vanilla --size 256 --shape 256 256 32
    .venv/bin/python benchmarks/predict_onnx.py --strategy unet --size 256 --shape 256 256 32
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from predict import _model, _run, _volume, workload_arguments


def _export(model: Path, out: Path) -> tuple[float, float]:
    """Export ``model`` into ``out``: its seconds, and the largest difference its check measured."""
    from medseg.infer.onnx_export import ExportSettings, export_onnx
    from medseg.params import load_params

    started = time.perf_counter()
    record = export_onnx(model, out, ExportSettings.from_params(load_params()))
    return time.perf_counter() - started, record["check"]["worst"]


def main() -> None:
    parser = workload_arguments(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per backend, interleaved (the best counts)")
    args = parser.parse_args()
    import onnxruntime
    import torch

    with tempfile.TemporaryDirectory(prefix="medseg-bench-predict-onnx-") as scratch:
        folder = Path(scratch)
        model = args.model or _model(args.strategy, args.size, folder)
        export = folder / "onnx"
        export_s, worst = _export(model, export)
        volume = _volume(tuple(args.shape), folder)
        backends = {"torch": model, "onnxruntime": export}
        seconds: dict[str, list[float]] = {name: [] for name in backends}
        for name, given in backends.items():
            _run(given, volume, folder / f"warm-{name}", args.batch, "cpu")  # imports, allocator, sessions
        for n in range(args.repeats):  # interleaved, so that a busy moment of a shared machine hits both
            for name, given in backends.items():
                seconds[name].append(_run(given, volume, folder / f"{name}-{n}", args.batch, "cpu"))
        results = {name: {"seconds": round(min(times), 3), "slices_per_s": round(args.shape[2] / min(times), 2),
                          "median_seconds": round(sorted(times)[len(times) // 2], 3)}
                   for name, times in seconds.items()}
    print(json.dumps({"model": str(args.model or f"{args.strategy} (random init) at {args.size} px"),
                      "volume": list(args.shape), "batch": args.batch, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                      "export_seconds": round(export_s, 1), "check_max_abs_difference": worst,
                      "results": results}, indent=2))
    baseline = results["torch"]["slices_per_s"]
    for name, result in results.items():
        print(f"{name:>12}: {result['slices_per_s']:8.2f} slices/s ({result['seconds']} s)  "
              f"x{result['slices_per_s'] / baseline:.2f}")


if __name__ == "__main__":
    main()
