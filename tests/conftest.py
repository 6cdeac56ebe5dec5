"""Shared fixtures: tiny params and a tiny ingested phantom dataset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "sample": {"num_patients": 6, "shape": [32, 32, 8]},
    "ingest": {"image_size": 64},
    "finetune": {"epochs": 2, "batch_size": 4, "warmup_iters": 2},
    "evaluate": {"batch_size": 8},
}


def tiny_params() -> dict[str, Any]:
    """The repository's params.yaml with sizes shrunk for fast tests."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = copy.deepcopy(params)
    for section, values in TINY_OVERRIDES.items():
        params[section].update(values)
    return params


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    """A tiny params.yaml in a temporary directory."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params()))
    return path


@pytest.fixture(scope="session")
def ingested_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny phantom, written and ingested once per test session."""
    from medseg.data.ingest import ingest_msd
    from medseg.data.sample import PhantomSpec, write_sample

    params = tiny_params()
    root = tmp_path_factory.mktemp("sample")
    write_sample(root / "raw", PhantomSpec.from_params(params["sample"]), seed=params["seed"])
    ingest_msd("sample", root / "raw", root / "processed", params["ingest"], seed=params["seed"])
    return root / "processed"
