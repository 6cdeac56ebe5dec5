"""SSLSAM pretraining: time per MAE step, images per second and peak memory of one backbone with and without
bf16, fused attention and activation checkpointing, each variant in its own process (so peak memory is its
own), as ratios to the plain fp32 step measured in the same run.

A step is what ``medseg pretrain_mae`` does per batch: mask 75 % of the patches, encode, decode, the loss on
the hidden patches, backward, AdamW. Random weights and slices (the timing does not depend on them).

    .venv/bin/python benchmarks/mae_step.py --backbone vit_b --size 256 --batch 2 --steps 2
    .venv/bin/python benchmarks/mae_step.py --backbone vit_b --size 1024 --batch 2 --steps 10 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch

VARIANTS = {  # name: (precision, fused attention, activation checkpointing)
    "fp32": ("fp32", False, False),
    "bf16": ("bf16", False, False),
    "fused": ("fp32", True, False),
    "checkpointing": ("fp32", False, True),
    "all": ("bf16", True, True),
}
DECODER = {"dim": 256, "depth": 2, "heads": 8}


def measure(backbone: str, variant: str, size: int, batch: int, steps: int, device: str) -> dict[str, Any]:
    """Seconds per step (after one warm-up step) and peak memory of one variant."""
    from medseg.models.speedups import use_activation_checkpointing, use_fused_attention
    from medseg.pretrain.mae import PATCH_SIZE, MaskedAutoencoder, random_masks

    precision, fused, checkpointing = VARIANTS[variant]
    torch.manual_seed(0)
    model = MaskedAutoencoder(backbone, size, DECODER)
    if fused:
        use_fused_attention(model)
    if checkpointing:
        use_activation_checkpointing(model)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    images = (torch.rand(batch, 3, size, size) * 255).to(device)
    generator = torch.Generator().manual_seed(0)
    timings = []
    for _ in range(steps + 1):
        masks = random_masks(batch, size // PATCH_SIZE, 0.75, generator).to(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            loss, _ = model(images, masks)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    step = sum(timings[1:]) / steps
    return {"variant": variant, "step_s": step, "images_per_s": batch / step, "peak_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit_b")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.backbone, args.one, args.size, args.batch, args.steps, args.device)))
        return
    rows = []
    for variant in dict.fromkeys(["fp32", *args.variants]):
        command = [sys.executable, __file__, "--one", variant, "--backbone", args.backbone, "--size", str(args.size),
                   "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    reference = rows[0]
    print(f"MAE step, {args.backbone}, {args.size}x{args.size}, batch {args.batch}, {args.device}, {args.steps} timed "
          "steps; ratios vs plain fp32 measured in this run")
    print(f"{'variant':<14} {'s/step':>8} {'images/s':>9} {'x time':>7} {'peak MB':>9} {'x mem':>6}")
    for row in rows:
        print(f"{row['variant']:<14} {row['step_s']:>8.3f} {row['images_per_s']:>9.2f} "
              f"{row['step_s'] / reference['step_s']:>7.2f} {row['peak_mb']:>9} "
              f"{row['peak_mb'] / reference['peak_mb']:>6.2f}")


if __name__ == "__main__":
    main()
