"""The ``registry`` section of params.yaml: what ``medseg register`` and ``medseg promote`` allow."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from medseg.params_types import Section

STAGE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")  # a GTO stage that is also a plain word in a tag


def _stage(value: str) -> str:
    if not STAGE.match(value) or len(value) > 64:
        raise ValueError(f"{value!r} is not a stage name: lower-case letters, digits and '-' (e.g. staging, prod)")
    return value


Stage = Annotated[str, AfterValidator(_stage)]


class RegistryParams(Section):
    """The model registry (README "Model registry"): the stages a version may be promoted to, those that refuse
    random-init weights and synthetic-data models, and how ``medseg register`` numbers a version by default."""

    stages: list[Stage] = Field(default_factory=lambda: ["staging", "prod"], min_length=1)
    guarded_stages: list[Stage] = Field(default_factory=lambda: ["prod"])
    default_bump: Literal["patch", "minor", "major"] = "minor"
    require_pushed: bool = True

    @model_validator(mode="after")
    def _guarded_are_stages(self) -> RegistryParams:
        unknown = [stage for stage in self.guarded_stages if stage not in self.stages]
        if unknown:
            raise ValueError(f"guarded_stages: {unknown[0]!r} is not one of stages ({', '.join(self.stages)})")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("stages: a stage is listed twice")
        return self
