"""Exported baselines in the one model format: the spec names the baseline and its network settings."""

from __future__ import annotations

from typing import Any

from medseg.baselines.networks import Baseline, parse_baseline
from medseg.baselines.nnunet_model import NAME as NNUNET
from medseg.baselines.nnunet_model import NnunetSpec, parse_nnunet_settings
from medseg.errors import MedsegError


def parse_baseline_spec(spec: Any) -> Baseline | NnunetSpec:
    """The baseline a checkpoint's spec records, checked (MedsegError without a path: the caller names it)."""
    settings = spec.get("settings") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("baseline"), str) or not isinstance(settings, dict):
        raise MedsegError("a baseline spec needs 'baseline' (a name) and 'settings' (a dict)")
    if spec["baseline"] == NNUNET:
        return parse_nnunet_settings(settings)
    return parse_baseline(spec["baseline"], settings)
