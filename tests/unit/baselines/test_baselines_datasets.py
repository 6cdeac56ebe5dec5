"""Every baseline on a multi-class dataset (MSD hippocampus layout: two structures) and on real slices
(../shared/data/busi, skipped when absent): trained by `medseg baseline`, scored by `medseg evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import hippocampus_layout, tiny_params
from medseg.baselines import nnunet
from medseg.cli import main
from medseg.data.ingest import ingest_dataset

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
NNUNET_TINY = {"trainer": nnunet.TINY_TRAINER, "processes": 0, "mirroring": False, "verify_dataset": False}


def _ingest(alias: str, raw: Path, out: Path) -> Path:
    params = tiny_params()
    ingest_dataset(alias, raw, out, {**params["ingest"], "image_size": 64}, int(params["seed"]))
    return out


@pytest.fixture(scope="module")
def hippocampus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hippocampus")
    hippocampus_layout(root / "raw")
    return _ingest("mri_hippocampus", root / "raw", root / "processed")


@pytest.fixture(scope="module")
def busi() -> Path:
    raw = SHARED / "busi"
    if not raw.is_dir():
        pytest.skip(f"real sample {raw} is absent")
    return raw


def _train_and_score(dataset: str, network: str, data: Path, root: Path) -> dict:
    params = tiny_params()
    params["finetune"]["work_dir"] = str(root / "work")
    params["baseline"]["nnunet"] = dict(NNUNET_TINY)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(root / "params.yaml"), "--dataset", dataset, "--data", str(data)]
    model = root / "models" / network
    assert main(["baseline", "--network", network, "--out", str(model), *common]) == 0
    assert main(["evaluate", "--strategy", network, "--model", str(model), "--out", str(root / "eval"), *common]) == 0
    metrics = json.loads((root / "eval/metrics.json").read_text())
    return {**metrics, **json.loads((root / "eval/metrics_details.json").read_text())}


@pytest.mark.parametrize("network", ["unet", "swinunet", pytest.param("nnunet", marks=pytest.mark.slow)])
def test_multi_class_datasets_train_one_output_per_structure(network: str, hippocampus: Path, tmp_path: Path) -> None:
    metrics = _train_and_score("mri_hippocampus", network, hippocampus, tmp_path)
    assert set(metrics["per_class"]) == {"anterior hippocampus", "posterior hippocampus"}  # the registry's names
    assert metrics["synthetic_data"] is False and metrics["dice_mean"] is not None


@pytest.mark.parametrize("network", ["unet", "swinunet", pytest.param("nnunet", marks=pytest.mark.slow)])
def test_baselines_train_on_real_ultrasound_slices(network: str, busi: Path, tmp_path: Path) -> None:
    data = _ingest("us_breast", busi, tmp_path / "processed")
    metrics = _train_and_score("us_breast", network, data, tmp_path / "run")
    test_slices = int((pd.read_parquet(data / "manifest.parquet")["split"] == "test").sum())
    assert metrics["dataset"] == "us_breast" and metrics["strategy"] == network and metrics["num_slices"] == test_slices
    assert metrics["synthetic_data"] is False and 0.0 <= metrics["dice_mean"] <= 1.0
