"""Baselines vs SAM strategies: time per training step (and per epoch) and peak memory, same slices, batch and
loss, measured in the same run, each model in its own process (so peak memory is its own).

``nnunet`` is the network nnU-Net's own planner builds for this slice size (planned on the synthetic phantom
ingested at ``--size``; about half a minute), trained here with the shared loss and optimiser and without
deep supervision, so the step compares the architectures; nnU-Net's trainer adds deep supervision and its
SGD schedule, and samples its own batch size and patch (``nnunet/plans.json`` of a trained run).

Every model trains with AdamW and MONAI's Dice + cross-entropy on the same random slices (values 0-255, a
disc as the mask) at the same size and batch; SAM strategies start from random weights (the timing does not
depend on them) and run their encoder every step (training uses the embedding cache for decoder-only
strategies: benchmarks/embedding_cache.py measures that). Prints seconds per step, seconds per epoch over
``--images`` slices, peak memory (CUDA: allocated; CPU: the process's maximum resident set) and each as a
ratio to ``vit_t_dec_vanilla``.

    .venv/bin/python benchmarks/baselines.py --size 256 --batch 4 --steps 4
    .venv/bin/python benchmarks/baselines.py --size 1024 --batch 4 --device cuda --images 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

import torch

MODELS = ("unet", "swinunet", "nnunet", "vit_t_dec_vanilla", "vit_b_endec_lora")
REFERENCE = "vit_t_dec_vanilla"


def _model(name: str, size: int) -> torch.nn.Module:
    from medseg.baselines.networks import BASELINES, BaselineSegmenter, parse_baseline
    from medseg.models.factory import build_model
    from medseg.models.strategies import PeftConfig
    from medseg.params import load_params

    params = load_params()
    if name == "nnunet":
        return _nnunet(params, size)
    if name in BASELINES:
        return BaselineSegmenter(parse_baseline(name, params["baseline"][name]), size, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init is the point here
        return build_model(name, PeftConfig.from_params(params["models"]), size, 2)


def _nnunet(params: dict[str, Any], size: int) -> torch.nn.Module:
    """nnU-Net's planned 2-D network for ``size`` px slices of the phantom (planned in a temporary folder)."""
    import tempfile
    from pathlib import Path

    from medseg.baselines import nnunet
    from medseg.baselines.nnunet_model import NnunetSegmenter, NnunetSpec
    from medseg.data.ingest import ingest_dataset
    from medseg.data.sample import PhantomSpec, write_sample

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_sample(root / "raw", PhantomSpec.from_params(params["sample"]), int(params["seed"]))
        ingest = {**params["ingest"], "image_size": size, "workers": 1}
        ingest_dataset("sample", root / "raw", root / "processed", ingest, int(params["seed"]))
        nnunet.export_dataset(root / "processed", nnunet.nnunet_dirs(root).raw, 1, "sample")
        preprocessed = nnunet.plan_and_preprocess(root, 1, processes=1, verify=False)
        plans = json.loads((preprocessed / f"{nnunet.PLANS}.json").read_text())
        dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    spec = NnunetSpec(plans, dataset_json, nnunet.CONFIGURATION, "nnUNetTrainer", None)
    return NnunetSegmenter(spec, size, 2).network


def _batch(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator) * 255
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2).long()
    return images, disc.expand(batch, size, size).clone()


def measure(name: str, size: int, batch: int, steps: int, device: str) -> dict[str, Any]:
    """Seconds per training step (after one warm-up step) and peak memory of one model."""
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    model = _model(name, size).to(device).train()
    normalise = name == "nnunet"  # nnU-Net's network takes z-scored one-channel slices
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    images, masks = (t.to(device) for t in _batch(size, batch))
    timings = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        inputs = (images[:, :1] - 127.5) / 127.5 if normalise else images
        loss_fn(model(inputs), masks.unsqueeze(1)).backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"model": name, "step_s": sum(timings[1:]) / steps, "peak_mb": round(peak), "trainable": trainable}


def _in_subprocess(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", name, "--size", str(args.size), "--batch", str(args.batch),
               "--steps", str(args.steps), "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=72, help="training slices per epoch (the demo: 72)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.size, args.batch, args.steps, args.device)))
        return
    rows = {name: _in_subprocess(name, args) for name in dict.fromkeys([REFERENCE, *args.models])}
    reference = rows[REFERENCE]
    steps_per_epoch = -(-args.images // args.batch)
    print(f"{args.size}x{args.size}, batch {args.batch}, {args.device}, {args.steps} timed steps, "
          f"{args.images} slices per epoch; ratios vs {REFERENCE} measured in this run")
    print(f"{'model':<20} {'trainable':>12} {'s/step':>8} {'s/epoch':>9} {'x time':>7} {'peak MB':>9} {'x mem':>6}")
    for row in rows.values():
        epoch, speed = row["step_s"] * steps_per_epoch, row["step_s"] / reference["step_s"]
        print(f"{row['model']:<20} {row['trainable']:>12,} {row['step_s']:>8.3f} {epoch:>9.1f} {speed:>7.2f} "
              f"{row['peak_mb']:>9} {row['peak_mb'] / reference['peak_mb']:>6.2f}")


if __name__ == "__main__":
    main()
