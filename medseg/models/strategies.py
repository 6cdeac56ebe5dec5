"""Fine-tuning strategies: ``<backbone>_<component>_<method>`` ids, e.g. ``vit_t_dec_vanilla``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from medseg.errors import MedsegError
from medseg.models.backbones import ENCODER_BUILDERS

COMPONENTS = {"dec": "mask decoder only", "endec": "image encoder + mask decoder"}
METHODS = {"vanilla": "update all parameters of the chosen components"}
_STRATEGY_ID = re.compile(r"^(?P<backbone>vit_[a-z]+)_(?P<component>[a-z]+)_(?P<method>[a-z*]+)$")


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy id."""

    backbone: str
    component: str
    method: str

    @property
    def name(self) -> str:
        return f"{self.backbone}_{self.component}_{self.method}"


def parse_strategy(strategy_id: str) -> Strategy:
    """Parse and check a strategy id against the known backbones, components and methods."""
    match = _STRATEGY_ID.match(strategy_id)
    if not match:
        raise MedsegError(f"strategy '{strategy_id}' is not of the form <backbone>_<dec|endec>_<method>")
    strategy = Strategy(**match.groupdict())
    for value, known, what in (
        (strategy.backbone, ENCODER_BUILDERS, "backbone"),
        (strategy.component, COMPONENTS, "component"),
        (strategy.method, METHODS, "method"),
    ):
        if value not in known:
            raise MedsegError(f"strategy '{strategy_id}': unknown {what} '{value}'; known: {sorted(known)}")
    return strategy


def apply_strategy(model: nn.Module, strategy: Strategy) -> None:
    """Set ``requires_grad`` so that exactly the strategy's parameters train.

    Decoder-only: the mask decoder trains; image and prompt encoders are frozen (automated mode
    keeps the default prompt embeddings). Encoder+decoder vanilla: every parameter trains.
    """
    for parameter in model.parameters():
        parameter.requires_grad = strategy.component == "endec"
    for parameter in model.mask_decoder.parameters():
        parameter.requires_grad = True


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
