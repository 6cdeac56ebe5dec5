"""SAM's mask decoder in automated mode: one call for the batch vs one call per image.

Automated mode gives every image the same default prompt, so ``SamSegmenter.decode_all`` decodes a
batch in one call (the prompt's tokens broadcast over the images). The baseline is one call per image,
as SAM's predictor and the study's code do it, computed here by calling ``decode_all`` on one-image
slices. Both run the same model (random init, decoder-only strategy) on the same embeddings:

- ``train step``: decoder-only training on cached embeddings (decode, MONAI Dice + cross-entropy,
  backward, AdamW), where the decoder is the whole cost;
- ``inference``: ``decode_all`` without gradients, as ``predict`` and evaluation call it after the encoder.

Prints the best of ``--repeats`` interleaved timings, the speed-up over one call per image and the
largest difference between the two logits (must be <= 1e-4).

    .venv/bin/python benchmarks/decoder_batch.py --size 256 --batch 8
    .venv/bin/python benchmarks/decoder_batch.py --size 1024 --batch 8 --device cuda
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
from monai.losses import DiceCELoss

from medseg.models.factory import build_model
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import PeftConfig
from medseg.params import load_params
from medseg.train.runtime import resolve_device

TOLERANCE = 1e-4


def _decoded(model: SamSegmenter, embeddings: torch.Tensor, per_image: bool) -> torch.Tensor:
    if per_image:
        return torch.cat([model.decode_all(one)[0] for one in embeddings.split(1)])
    return model.decode_all(embeddings)[0]


def _timed(run: Callable[[bool], object], per_image: bool, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    run(per_image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _workloads(model: SamSegmenter, embeddings: torch.Tensor, masks: torch.Tensor,
               ) -> dict[str, Callable[[bool], object]]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    def train_step(per_image: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(_decoded(model, embeddings, per_image), masks).backward()
        optimizer.step()

    def inference(per_image: bool) -> None:
        with torch.no_grad():
            _decoded(model, embeddings, per_image)

    return {"train step": train_step, "inference": inference}


def measure(strategy: str, size: int, batch: int, repeats: int, device: torch.device) -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(strategy, PeftConfig.from_params(load_params("params.yaml")["models"]), size, 2)
    model.to(device).train()
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device) * 255
    with torch.no_grad():
        embeddings = model.embed(images)
        difference = (_decoded(model, embeddings, False) - _decoded(model, embeddings, True)).abs().max().item()
    if difference > TOLERANCE:
        raise SystemExit(f"{strategy}: batched logits differ from per-image ones by {difference:.2e}")
    masks = (torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(2)) > 0.7).long().to(device)
    for name, run in _workloads(model, embeddings, masks).items():
        run(False), run(True)  # warm-up
        best = {True: float("inf"), False: float("inf")}
        for _ in range(repeats):
            for per_image in (True, False):
                best[per_image] = min(best[per_image], _timed(run, per_image, device))
        print(f"{strategy:<22}{name:<12}{best[True] * 1e3:>14.1f}{best[False] * 1e3:>12.1f}"
              f"{best[True] / best[False]:>9.2f}x{difference:>11.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", default=["vit_t_dec_vanilla", "vit_b_dec_lora"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"batch {args.batch}, input {args.size}, best of {args.repeats}, device {device}")
    print(f"{'strategy':<22}{'workload':<12}{'per image ms':>14}{'batched ms':>12}{'speed-up':>10}{'max diff':>11}")
    for strategy in args.strategies:
        measure(strategy, args.size, args.batch, args.repeats, device)


if __name__ == "__main__":
    main()
