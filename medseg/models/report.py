"""``medseg models``: total and trainable parameters of every backbone x strategy, beside Table 3.

Counting convention: "total" counts every parameter of the model as built here (image encoder,
prompt encoder, mask decoder with ``num_classes`` outputs, plus the strategy's adapters or LoRA);
"trainable" counts parameters with ``requires_grad``. The study's Table 3 also counts, for the
encoder+decoder Adapter rows of ViT-B/H, a 3D-only "depth" adapter per adapted block that its code
builds but never trains in 2D; we do not build it and report the "paper convention" figure as our
count plus those adapters' size.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch

from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import (
    PeftConfig,
    Strategy,
    all_strategies,
    apply_strategy,
    count_parameters,
    reference_code_depth_adapters,
)

TABLE3_IMAGE_SIZE = 1024
TABLE3_CLASSES = 2


@dataclass(frozen=True)
class ParameterRow:
    strategy: Strategy
    total: int
    trainable: int
    paper_extra: int  # the reference code's never-trained depth adapters

    @property
    def paper_total(self) -> int:
        return self.total + self.paper_extra

    @property
    def paper_trainable(self) -> int:
        return self.trainable + self.paper_extra


def count_strategy(strategy: Strategy, peft: PeftConfig, image_size: int = TABLE3_IMAGE_SIZE,
                   num_classes: int = TABLE3_CLASSES) -> ParameterRow:
    """Counts for one strategy; SAM ViT-B/H are built on the meta device (no memory, no init)."""
    device = "cpu" if strategy.backbone == "vit_t" else "meta"  # TinyViT's init needs real tensors
    with torch.device(device):
        model = SamSegmenter(strategy.backbone, image_size, num_classes)
    apply_strategy(model, strategy, peft)
    total, trainable = count_parameters(model)
    return ParameterRow(strategy, total, trainable, reference_code_depth_adapters(model, strategy, peft))


def paper_table3() -> dict[tuple[str, str, str], dict[str, Any]]:
    """The study's Table 3, keyed by (backbone, component, method)."""
    import csv

    text = resources.files("medseg.reference").joinpath("table3.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {(r["backbone"], r["component"], r["method"]): r for r in rows}


def parameter_rows(peft: PeftConfig) -> list[ParameterRow]:
    """Table 3's 18 strategies plus A* (adapters in every encoder block) for each backbone."""
    strategies = all_strategies() + [Strategy(b, "endec", "adapterall") for b in ("vit_h", "vit_b", "vit_t")]
    return [count_strategy(s, peft) for s in strategies]


def markdown_report(rows: list[ParameterRow]) -> str:
    paper = paper_table3()
    lines = [
        "| backbone | component | method | total | trainable | paper convention (total / trainable) "
        "| Table 3 (total / trainable) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        s = row.strategy
        ref = paper.get((s.backbone, s.component, s.method))
        reference = f"{ref['total_m']}M / {ref['trainable_m']}M" if ref else "-"
        convention = (f"{row.paper_total / 1e6:.2f}M / {row.paper_trainable / 1e6:.2f}M"
                      if row.paper_extra else "same")
        lines.append(f"| {s.backbone} | {s.component} | {s.method} | {row.total:,} | {row.trainable:,} "
                     f"({100 * row.trainable / row.total:.2f}%) | {convention} | {reference} |")
    return "\n".join(lines) + "\n"
