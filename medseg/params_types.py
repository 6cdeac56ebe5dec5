"""Value types shared by the params schema (``medseg.params_schema``, ``medseg.params_kubeflow``): checked
numbers, names, devices, the grid's axes and the pretrained-init block."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from medseg.errors import MedsegError
from medseg.names import check_name

DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")
def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _name(value: str) -> str:
    try:
        return check_name(value, "name")
    except MedsegError as exc:
        raise ValueError(exc.problem) from None


def _device(value: str) -> str:
    if not DEVICE.match(value):
        raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, AfterValidator(_name)]
Device = Annotated[str, AfterValidator(_device)]
Backbone = Literal["vit_h", "vit_b", "vit_t"]
Mode = Literal["automated", "point", "box"]
Profile = Literal["full", "fewshot"]  # all training slices, or the 5-shot selection (finetune.fewshot's settings)
PretrainedInit = Literal["medsam", "sslsam", "supsam"]
Pair = tuple[Finite, Finite]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


def increasing(pair: Pair | None, what: str) -> Pair | None:
    if pair is not None and not pair[0] < pair[1]:
        raise ValueError(f"{what} [{pair[0]}, {pair[1]}] must be [low, high] with low < high")
    return pair


def _check_strategies(value: list[str]) -> list[str]:
    from medseg.models.strategy_ids import parse_strategy

    for strategy in value:
        try:
            parse_strategy(strategy)
        except MedsegError as exc:
            raise ValueError(exc.problem) from None
    return value


Strategies = Annotated[list[str], AfterValidator(_check_strategies)]


class PretrainedParams(Section):
    """Runs from other initial weights than SAM's (the ``finetune_pretrained`` stage): inits x profiles x modes x
    strategies on every dataset."""

    inits: list[PretrainedInit] = Field(default_factory=list)
    strategies: Strategies = Field(default_factory=list)
    modes: list[Mode] = Field(default_factory=lambda: ["automated"], min_length=1)
    profiles: list[Profile] = Field(default_factory=lambda: ["full"], min_length=1)

    @model_validator(mode="after")
    def _strategies_given(self) -> PretrainedParams:
        if self.inits and not self.strategies:
            raise ValueError("strategies: give the strategies the inits are fine-tuned in (or inits: [])")
        return self
