"""Adapters: read a dataset as downloaded into cases, and a case into arrays.

Each adapter module has ``discover(raw_dir, spec) -> list[Case]`` and
``load(case, spec, max_voxels) -> (image (X, Y, Z) float32, mask (X, Y, Z) uint8 or None)``;
2D images come back with Z = 1. Settings live in the dataset's registry entry."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from medseg.data.registry import ADAPTER_KINDS


def adapter_for(kind: str) -> ModuleType:
    """The adapter module of a registry ``adapter`` kind."""
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"unknown adapter kind {kind!r}")
    return import_module(f"medseg.data.adapters.{kind}")
