"""Strategy ids, ``<backbone>_<component>_<method>`` (e.g. ``vit_b_endec_lora``), parsed without torch, so
that settings can be checked when any step starts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medseg.errors import MedsegError

BACKBONES = ("vit_h", "vit_b", "vit_t")  # the keys of medseg.models.backbones.ENCODER_BUILDERS
COMPONENTS = {"dec": "mask decoder only", "endec": "image encoder + mask decoder"}
METHODS = {
    "vanilla": "all parameters of the chosen components",
    "adapter": "bottleneck adapters at the configured encoder blocks and in the decoder",
    "adapterall": "adapters in every encoder block (the study's A*) and in the decoder",
    "lora": "rank-r updates of query and value projections",
}
_STRATEGY_ID = re.compile(r"(?P<backbone>vit_[a-z]+)_(?P<component>[a-z]+)_(?P<method>[a-z]+)\Z")


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
        (strategy.backbone, BACKBONES, "backbone"),
        (strategy.component, COMPONENTS, "component"),
        (strategy.method, METHODS, "method"),
    ):
        if value not in known:
            raise MedsegError(f"strategy '{strategy_id}': unknown {what} '{value}'; known: {sorted(known)}")
    return strategy
