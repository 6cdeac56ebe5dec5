"""``medseg predict`` throughput on a 3-D volume: slices per second end to end (read, replay the protocol,
segment, resize back, write the NIfTI), one slice per forward pass (the baseline) against ``--batch`` slices,
measured in the same run on the same volume and model.

The model is a random-init SAM strategy exported in the one model format (timing does not depend on the
weights) with a min-max protocol, or ``--model`` an exported ``model.pt``; the volume is a synthetic NIfTI
of ``--shape`` (sliced along the last axis). Nothing is downloaded.

    .venv/bin/python benchmarks/predict.py --strategy vit_t_dec_vanilla --size 256 --shape 256 256 32
    .venv/bin/python benchmarks/predict.py --strategy unet --size 256 --shape 256 256 32
    .venv/bin/python benchmarks/predict.py --model models/sample/sam/full/automated/vit_t_dec_vanilla/model.pt
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np


def _model(strategy: str, size: int, folder: Path) -> Path:
    """A random-init exported model recording a min-max protocol."""
    import torch

    from medseg.baselines.networks import BASELINES, BaselineSegmenter, baseline_spec, parse_baseline
    from medseg.data.protocol import Protocol
    from medseg.models.checkpoints import export_checkpoint
    from medseg.models.factory import build_model, model_spec
    from medseg.models.strategies import PeftConfig
    from medseg.params import load_params

    params = load_params()
    peft = PeftConfig.from_params(params["models"])
    torch.manual_seed(0)
    if strategy in BASELINES:  # a baseline network (params.yaml's baseline.<name> settings)
        baseline = parse_baseline(strategy, params["baseline"][strategy])
        model, spec = BaselineSegmenter(baseline, size, 2), baseline_spec(baseline)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random init is the point here
            model, spec = build_model(strategy, peft, size, 2), model_spec(strategy, peft)
    path = folder / "model.pt"
    metadata = {"strategy": strategy, "mode": "automated", "random_init": True,
                "protocol": Protocol("RAS+", 2, size, None, None, 2**27).to_record()}
    export_checkpoint(model, path, spec, metadata)
    return path


def _volume(shape: tuple[int, int, int], folder: Path) -> Path:
    import nibabel as nib

    data = np.random.default_rng(0).normal(100, 30, shape).astype(np.float32)
    path = folder / "volume.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    return path


def _run(model: Path, volume: Path, out: Path, batch: int, device: str) -> float:
    """Seconds for one predict run (the step's own timing of the volume)."""
    from medseg.infer.predict import PredictRequest, predict

    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = predict(PredictRequest(model, volume, out, batch_size=batch, device=device))
    return float(summary["outputs"][0]["seconds"])


def workload_arguments(description: str) -> argparse.ArgumentParser:
    """The model and volume options the predict benchmarks share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--strategy", default="vit_t_dec_vanilla", help="a SAM strategy id, or unet/swinunet")
    parser.add_argument("--size", type=int, default=256, help="model input size (random-init model)")
    parser.add_argument("--model", type=Path, default=None, help="an exported model.pt instead")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 256, 32))
    parser.add_argument("--batch", type=int, default=8, help="slices per forward pass (predict's default: 8)")
    return parser


def main() -> None:
    parser = workload_arguments(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="runs per batch size (the best counts)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="medseg-bench-predict-") as scratch:
        folder = Path(scratch)
        model = args.model or _model(args.strategy, args.size, folder)
        volume = _volume(tuple(args.shape), folder)
        _run(model, volume, folder / "warm", args.batch, args.device)  # imports, allocator, caches
        slices = args.shape[2]
        results = {}
        for batch in (1, args.batch):
            best = min(_run(model, volume, folder / f"out{batch}-{n}", batch, args.device) for n in range(args.repeats))
            results[batch] = {"seconds": round(best, 3), "slices_per_s": round(slices / best, 2)}
    baseline = results[1]["slices_per_s"]
    print(json.dumps({"model": str(args.model or f"{args.strategy} (random init) at {args.size} px"),
                      "volume": list(args.shape), "device": args.device, "torch_threads": torch.get_num_threads(),
                      "results": {f"batch {b}": r for b, r in results.items()}}, indent=2))
    for batch, result in results.items():
        ratio = result["slices_per_s"] / baseline
        print(f"batch {batch:>3}: {result['slices_per_s']:8.2f} slices/s ({result['seconds']} s)  x{ratio:.2f}")


if __name__ == "__main__":
    main()
