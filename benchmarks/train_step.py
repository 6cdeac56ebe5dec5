"""Encoder+decoder training step (P2): our speed-ups vs the stock segment-anything modules in fp32.

Each configuration trains the same randomly initialised model (same seed, same batch) for a few
AdamW steps with MONAI's Dice + cross-entropy, in a fresh process so that its peak memory is its own:

- ``stock``: segment-anything's attention, fp32 (the study's code path);
- ``sdpa``: attention through ``scaled_dot_product_attention`` (``finetune.fused_attention``);
- ``sdpa+bf16``: plus bf16 autocast (``finetune.precision: bf16``);
- ``sdpa+bf16+ckpt``: plus activation checkpointing (``finetune.activation_checkpointing``);
- ``sdpa+ckpt``: fused attention and checkpointing in fp32.

Prints the mean step time (first step excluded), peak memory (CUDA: peak allocated; CPU: peak RSS
above the RSS after building the model) and both as ratios to ``stock`` measured in the same run.

    .venv/bin/python benchmarks/train_step.py --size 256 --steps 3
    .venv/bin/python benchmarks/train_step.py --size 1024 --steps 10 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings

import torch

CONFIGS = {
    "stock": {"fused_attention": False, "precision": "fp32", "activation_checkpointing": False},
    "sdpa": {"fused_attention": True, "precision": "fp32", "activation_checkpointing": False},
    "sdpa+bf16": {"fused_attention": True, "precision": "bf16", "activation_checkpointing": False},
    "sdpa+bf16+ckpt": {"fused_attention": True, "precision": "bf16", "activation_checkpointing": True},
    "sdpa+ckpt": {"fused_attention": True, "precision": "fp32", "activation_checkpointing": True},
}


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _measure(strategy: str, config: dict[str, object], size: int, steps: int, batch: int, device_name: str) -> dict:
    """Train ``steps`` steps in this process; returns times and peak memory."""
    from monai.losses import DiceCELoss

    from medseg.models.factory import build_model
    from medseg.models.speedups import use_activation_checkpointing, use_fused_attention
    from medseg.models.strategies import PeftConfig
    from medseg.params import load_params
    from medseg.train.runtime import Runtime, resolve_device

    device = resolve_device(device_name)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(strategy, PeftConfig.from_params(load_params("params.yaml")["models"]), size, 2)
    if config["fused_attention"]:
        use_fused_attention(model)
    if config["activation_checkpointing"]:
        use_activation_checkpointing(model)
    model.to(device).train()
    runtime = Runtime(device, str(config["precision"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    images = (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 255).to(device)
    masks = (torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(2)) > 0.7).long().to(device)
    baseline_mb = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(steps + 1):
        _sync(device)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - started)
        losses.append(loss.item())
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mb)
    return {"step_s": sum(times[1:]) / steps, "peak_mb": peak, "losses": losses, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["vit_b_endec_lora", "vit_b_endec_adapter"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        strategy, name = args.child.split(":")
        print(json.dumps(_measure(strategy, CONFIGS[name], args.size, args.steps, args.batch, args.device)))
        return
    print(f"batch {args.batch}, input {args.size}, {args.steps} timed steps (+1 warm-up), device {args.device}")
    print(f"{'strategy':<22}{'config':<17}{'step (s)':>10}{'peak (MB)':>11}{'speed-up':>10}{'memory':>8}  first loss")
    for strategy in args.strategies:
        stock = None
        for name in args.configs:
            command = [sys.executable, __file__, "--child", f"{strategy}:{name}", "--size", str(args.size),
                       "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            stock = stock or result
            print(f"{strategy:<22}{name:<17}{result['step_s']:>10.3f}{result['peak_mb']:>11.0f}"
                  f"{stock['step_s'] / result['step_s']:>9.2f}x{result['peak_mb'] / stock['peak_mb']:>7.2f}x"
                  f"  {result['losses'][0]:.5f} ({result['device_name']})")


if __name__ == "__main__":
    main()
