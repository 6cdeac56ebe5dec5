"""Shared fixtures: tiny params and a tiny phantom, raw and ingested."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import tiny_params


@pytest.fixture
def params_dict() -> dict[str, Any]:
    """A fresh copy of the tiny params (safe to modify)."""
    return tiny_params()


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """The tiny params written as a YAML file for CLI runs."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params()))
    return path


@pytest.fixture(scope="session")
def phantom_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom in MSD layout, written once per session (treat as read-only)."""
    from medseg.data.sample import PhantomSpec, write_sample

    params = tiny_params()
    out = tmp_path_factory.mktemp("phantom") / "raw"
    write_sample(out, PhantomSpec.from_params(params["sample"]), int(params["seed"]))
    return out


@pytest.fixture(scope="session")
def ingested_sample(phantom_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom ingested with the tiny params, once per session (treat as read-only)."""
    from medseg.data.ingest import ingest_dataset

    params = tiny_params()
    out = tmp_path_factory.mktemp("ingested") / "processed"
    ingest_dataset("sample", phantom_raw, out, params["ingest"], int(params["seed"]))
    return out
