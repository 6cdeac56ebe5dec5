"""Classes come from the dataset (ingest.json), may be narrowed per dataset, and travel with the model."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import tiny_params
from medseg.data.classes import ClassMap, resolve_classes
from medseg.errors import MedsegError
from medseg.eval.evaluate import evaluate
from medseg.eval.scoring import ScoreSettings
from medseg.models.checkpoints import load_exported
from medseg.params import load_params
from medseg.train.config import TrainConfig
from medseg.train.finetune import finetune

STRATEGY = "vit_t_dec_vanilla"


@pytest.fixture(scope="module")
def three_classes(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom with a second class (the lesion's right half, 'core'): labels 0, 1, 2 (read-only)."""
    data = tmp_path_factory.mktemp("classes") / "processed"
    shutil.copytree(ingested_sample, data)
    masks = np.load(data / "masks.npy")
    columns = np.arange(masks.shape[-1])[None, None, :] >= masks.shape[-1] // 2
    masks[(masks == 1) & columns] = 2
    np.save(data / "masks.npy", masks)
    manifest = pd.read_parquet(data / "manifest.parquet")
    manifest["labels_present"] = [",".join(str(v) for v in np.unique(masks[r])) for r in manifest["row"]]
    manifest.to_parquet(data / "manifest.parquet", index=False)
    summary = json.loads((data / "ingest.json").read_text())
    summary["labels"] = {"0": "background", "1": "lesion", "2": "core"}
    (data / "ingest.json").write_text(json.dumps(summary))
    return data


def _config(**overrides: object) -> TrainConfig:
    return dataclasses.replace(TrainConfig.from_params(tiny_params()), max_epochs=1, **overrides)


def test_the_model_learns_the_datasets_classes(three_classes: Path, tmp_path: Path) -> None:
    finetune("sample", STRATEGY, three_classes, tmp_path / "out", _config(), tmp_path / "work")
    model, metadata = load_exported(tmp_path / "out" / "model.pt")
    assert model.num_classes == 3 and metadata["classes"] == ["background", "lesion", "core"]


def test_finetune_classes_narrows_and_evaluation_reads_masks_the_same_way(three_classes: Path,
                                                                         tmp_path: Path) -> None:
    config = _config(classes={"sample": ["core"]})
    finetune("sample", STRATEGY, three_classes, tmp_path / "out", config, tmp_path / "work")
    model, metadata = load_exported(tmp_path / "out" / "model.pt")
    assert model.num_classes == 2 and metadata["classes"] == ["background", "core"]
    assert metadata["dataset_classes"] == {"names": ["background", "core"], "values": [0, 2]}
    metrics = evaluate("sample", STRATEGY, three_classes, tmp_path / "out" / "model.pt", tmp_path / "eval",
                       ScoreSettings(num_classes=2, bootstrap_samples=50), batch_size=8)
    details = json.loads((tmp_path / "eval" / "metrics_details.json").read_text())
    assert metrics["num_slices"] > 0 and "core" in json.dumps(details) and "lesion" not in json.dumps(details)


def test_prompt_modes_train_on_multi_class_data(three_classes: Path, tmp_path: Path) -> None:
    finetune("sample", STRATEGY, three_classes, tmp_path / "out", _config(mode="box"), tmp_path / "work")
    model, metadata = load_exported(tmp_path / "out" / "model.pt")
    assert model.num_classes == 2 and metadata["classes"] == ["background", "prompted object"]
    assert metadata["dataset_classes"]["names"] == ["background", "lesion", "core"]


def test_narrowing_to_a_class_the_dataset_lacks_is_one_line() -> None:
    with pytest.raises(MedsegError, match=r"finetune\.classes\.brain: \['tumour'\] not among the dataset's classes"):
        resolve_classes({0: "background", 1: "edema", 4: "enhancing"}, ["tumour"], "brain")


def test_non_consecutive_labels_are_renumbered_for_the_model() -> None:
    classes = resolve_classes({0: "background", 1: "edema", 4: "enhancing"}, None, "brain")
    assert classes.names == ("background", "edema", "enhancing") and classes.values == (0, 1, 4)
    table = classes.lookup()
    assert table is not None and table[4] == 2 and table[1] == 1 and table[3] == 0
    assert ClassMap.from_metadata(classes.to_metadata("automated")) == classes


def test_the_old_global_num_classes_setting_says_what_replaced_it(tmp_path: Path) -> None:
    params = tiny_params()
    params["finetune"]["num_classes"] = 3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(MedsegError, match=r"finetune\.num_classes: no longer a setting: each dataset brings"):
        load_params(tmp_path / "params.yaml")


def test_prompted_evaluation_reports_each_class_of_the_prompted_objects(three_classes: Path, tmp_path: Path) -> None:
    finetune("sample", STRATEGY, three_classes, tmp_path / "out", _config(mode="point"), tmp_path / "work")
    evaluate("sample", STRATEGY, three_classes, tmp_path / "out" / "model.pt", tmp_path / "eval",
             ScoreSettings(num_classes=2, bootstrap_samples=50), batch_size=8)
    per_slice = pd.read_parquet(tmp_path / "eval" / "per_slice.parquet")
    assert set(per_slice["prompted_class"]) == {"lesion", "core"}
    per_class = json.loads((tmp_path / "eval" / "metrics_details.json").read_text())["per_class"]
    assert set(per_class) == {"lesion", "core"}
    assert sum(entry["num_scored_slices"] for entry in per_class.values()) == per_slice["dice_mean"].notna().sum()
