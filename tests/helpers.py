"""Helpers shared by the tests (importable as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from medseg.models.strategies import PeftConfig

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sample": {"num_patients": 6, "shape": [32, 32, 8]},
    "ingest": {"image_size": 64, "workers": 1},
    "finetune": {"max_epochs": 2, "batch_size": 4, "warmup_iters": 2},
    "evaluate": {"batch_size": 8},
}


def tiny_params() -> dict[str, Any]:
    """A fresh copy of the repository's params.yaml with sizes shrunk for fast tests."""
    params = copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))
    for section, values in TINY_OVERRIDES.items():
        params[section].update(values)
    return params


def peft_config() -> PeftConfig:
    """The Adapter/LoRA placements of the repository's params.yaml."""
    return PeftConfig.from_params(tiny_params()["models"])
