"""Decoder-only training: the embedding cache vs recomputing the frozen encoder every step.

The baseline is what the study's code does for decoder-only strategies: every step runs the frozen
image encoder, then the mask decoder. The cached path computes each image's embedding once
(``EmbeddingCache``) and trains the decoder on stored embeddings. Both paths start from the same
weights (``torch.manual_seed``), see the same batches in the same order, use no augmentation, AdamW
(lr 1e-4) on the decoder and MONAI's Dice + cross-entropy. The encoder runs in eval mode in both
paths (the cache's rule). Prints per-epoch times, the speed-up (cache fill excluded and included)
and the largest difference between the two loss trajectories (must be <= 1e-4).

    .venv/bin/python benchmarks/embedding_cache.py --size 256 --images 4
    .venv/bin/python benchmarks/embedding_cache.py --size 1024 --images 8 --backbones vit_b
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medseg.data.slice_dataset import SliceDataset
from medseg.models.factory import build_model
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import PeftConfig
from medseg.params import load_params
from medseg.train.embedding_cache import CachedEmbeddingDataset, EmbeddingCache

TOLERANCE = 1e-4


def _dataset(folder: Path, count: int, size: int, seed: int) -> Path:
    """A synthetic ingested split: random uint8 slices, one random rectangle per mask."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    masks = np.zeros((count, size, size), dtype=np.uint8)
    for mask in masks:
        top, left = rng.integers(0, size // 2, 2)
        height, width = rng.integers(size // 8, size // 2, 2)
        mask[top : top + height, left : left + width] = 1
    np.save(folder / "images.npy", rng.integers(0, 256, (count, size, size), dtype=np.uint8))
    np.save(folder / "masks.npy", masks)
    pd.DataFrame({"row": np.arange(count), "split": "train"}).to_parquet(folder / "manifest.parquet")
    (folder / "ingest.json").write_text(json.dumps({"labels": {"0": "background", "1": "object"}}))
    return folder


def _batches(count: int, batch_size: int, epochs: int, seed: int) -> list[list[list[int]]]:
    """The shuffled batch order of every epoch, shared by both paths."""
    generator = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(count, generator=generator).tolist() for _ in range(epochs)]
    return [[order[i : i + batch_size] for i in range(0, count, batch_size)] for order in orders]


def _train(model: SamSegmenter, batches: list[list[list[int]]],
           step_inputs: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]],
           forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[list[float], list[float]]:
    """Train the decoder over the given epochs; returns per-epoch seconds and per-step losses."""
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    model.image_encoder.eval()  # the cache's rule: encoder statistics never come from the batch
    times, losses = [], []
    for epoch in batches:
        started = time.perf_counter()
        for indices in epoch:
            inputs, masks = step_inputs(indices)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(inputs), masks.unsqueeze(1))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        times.append(time.perf_counter() - started)
    return times, losses


def _stack(dataset: Any, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, masks = zip(*(dataset[i] for i in indices), strict=True)
    return torch.stack(inputs), torch.stack(masks)


def _compare(backbone: str, data_dir: Path, cache_root: Path, args: argparse.Namespace,
             peft: PeftConfig) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="NO SAM CHECKPOINT")
        model = build_model(f"{backbone}_dec_vanilla", peft, args.size, 2)
    initial = copy.deepcopy(model.state_dict())
    base = SliceDataset(data_dir, "train")
    batches = _batches(len(base), args.batch_size, args.epochs, args.seed)
    reference = _train(model, batches, lambda idx: _stack(base, idx), model)

    model.load_state_dict(initial)
    started = time.perf_counter()
    cached = CachedEmbeddingDataset(base, EmbeddingCache(cache_root, model), args.batch_size)
    fill = time.perf_counter() - started
    with_cache = _train(model, batches, lambda idx: _stack(cached, idx), model.decode)
    difference = float(np.max(np.abs(np.subtract(reference[1], with_cache[1]))))
    return {"backbone": backbone, "reference": reference[0], "cached": with_cache[0], "fill": fill,
            "difference": difference, "misses": cached.cache.misses, "losses": reference[1]}


def _report(result: dict[str, Any], args: argparse.Namespace) -> None:
    reference, cached, fill = sum(result["reference"]), sum(result["cached"]), result["fill"]
    epochs = len(result["reference"])
    print(f"\n{result['backbone']} at {args.size}px, {args.images} images, batch {args.batch_size}, "
          f"{epochs} epochs")
    print("  encoder every step, s/epoch: " + ", ".join(f"{t:.3f}" for t in result["reference"]))
    print("  cached embeddings,  s/epoch: " + ", ".join(f"{t:.3f}" for t in result["cached"])
          + f"  (cache fill {fill:.3f} s, {result['misses']} encoder passes)")
    print(f"  speed-up over {epochs} epochs: x{reference / cached:.1f} fill excluded, "
          f"x{reference / (fill + cached):.1f} fill included")
    verdict = "ok" if result["difference"] <= TOLERANCE else "TOO LARGE"
    print(f"  max |loss difference| over {len(args.steps)} steps: {result['difference']:.2e} "
          f"(<= {TOLERANCE:g}: {verdict}); loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--backbones", nargs="+", default=["vit_t", "vit_b"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default; 1 is stable on a shared machine)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.steps = range(args.epochs * -(-args.images // args.batch_size))
    peft = PeftConfig.from_params(load_params("params.yaml")["models"])
    print(f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.2f}, device cpu")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = _dataset(Path(tmp) / "data", args.images, args.size, args.seed)
        for backbone in args.backbones:
            _report(_compare(backbone, data_dir, Path(tmp) / "cache", args, peft), args)


if __name__ == "__main__":
    main()
