"""The dataset registry: every entry is complete and listed, and each study dataset, written in miniature
as its download lays it out, ingests with the right slices, pairs, classes, patients and splits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from layouts import LAYOUTS, Expected

from helpers import REPO, tiny_params
from medseg.cli import main
from medseg.data.ingest import ingest_dataset
from medseg.data.registry import load_registry

REGISTRY = REPO / "medseg" / "data" / "registry"
ENTRIES = sorted(REGISTRY.glob("*.yaml"))
STUDY_NAMES = {
    "mri_brain_sclerosis": "MRI-BrainSclerosis", "mri_brain_duke": "MRI-BrainDuke",
    "mri_brain_resection": "MRI-BrainResection", "mri_brain_stroke_lesion": "MRI-BrainStrokeLesion",
    "mri_heart": "MRI-Heart", "mri_hippocampus": "MRI-Hippocampus", "mri_kidney": "MRI-Kidney",
    "mri_prostate": "MRI-Prostate", "ct_colon": "CT-Colon", "ct_hepatic_vessel": "CT-HepaticVessel",
    "ct_pancreas": "CT-Pancreas", "us_breast": "US-Breast", "us_kidney": "US-Kidney", "us_muscle": "US-Muscle",
    "xray_chest": "Xray-Chest", "xray_hip": "Xray-Hip", "mri_brain_subcortical": "MRI-BrainSubcortical",
    "mri_knee": "MRI-Knee", "mri_spine_spider": "MRI-SpineSPIDER",
}
PRETRAIN = {"mri_brain_subcortical", "mri_knee", "mri_spine_spider"}


def _params() -> dict[str, Any]:
    return {**tiny_params()["ingest"], "image_size": 16, "workers": 1}


# ---------------------------------------------------------------- registry entries


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda p: p.stem)
def test_entry_is_complete(entry: Path) -> None:
    raw = yaml.safe_load(entry.read_text())
    spec = load_registry()[entry.stem]
    assert raw["alias"] == entry.stem == spec.alias
    for field in ("name", "description", "citation", "licence", "download", "layout"):
        assert isinstance(raw[field], str) and raw[field].strip(), f"{entry.name}: empty {field}"
    assert spec.modality in ("CT", "MRI", "US", "X-ray")
    assert 0 in spec.labels and spec.slice_axis in (0, 1, 2)
    if spec.patient_id:  # the ``patient`` group, or the whole match when the pattern has no groups
        pattern = re.compile(spec.patient_id)
        assert "patient" in pattern.groupindex or pattern.groups == 0, f"{entry.name}: no 'patient' group"


def test_study_datasets_are_registered_as_the_study_names_them() -> None:
    registry = load_registry()
    assert set(STUDY_NAMES) <= set(registry)
    for alias, name in STUDY_NAMES.items():
        spec = registry[alias]
        assert spec.name == name and not spec.synthetic
        assert spec.use == ("pretrain" if alias in PRETRAIN else "finetune")


def test_datasets_command_lists_every_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "--params", str(REPO / "params.yaml")]) == 0
    listed = {line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert {p.stem for p in ENTRIES} <= listed


# ---------------------------------------------------------------- miniature downloads


@pytest.fixture(params=sorted(LAYOUTS), ids=str)
def ingested(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Expected, Path]:
    """A dataset's miniature layout written and ingested: (alias, what it must give, output folder)."""
    alias = request.param
    raw = tmp_path / "raw"
    raw.mkdir()
    expected = LAYOUTS[alias](raw)
    ingest_dataset(alias, raw, tmp_path / "out", _params(), seed=0)
    return alias, expected, tmp_path / "out"


def test_layout_ingests_as_expected(ingested: tuple[str, Expected, Path]) -> None:
    alias, expected, out = ingested
    summary = json.loads((out / "ingest.json").read_text())
    manifest = pd.read_parquet(out / "manifest.parquet")
    masks = np.load(out / "masks.npy")
    assert summary["num_slices"] == len(manifest) == len(masks)
    assert len(manifest) == expected.slices, f"{alias}: {len(manifest)} slices, expected {expected.slices}"
    assert masks.shape[1:] == (16, 16)
    assert set(np.unique(masks).tolist()) == expected.labels
    for image, label in expected.pairs.items():
        rows = manifest.loc[manifest["image_file"] == image, "label_file"]
        assert len(rows), f"{alias}: {image} was not ingested"
        assert set(rows) == {label}
    assert set(manifest["image_file"]) <= set(expected.pairs)
    if expected.patients is None:
        assert summary["grouping"] == "image"
        assert manifest["patient"].nunique() == manifest["case"].nunique()
    else:
        assert summary["grouping"] == "patient"
        assert set(manifest["patient"]) == expected.patients
    assert manifest.groupby("patient")["split"].nunique().max() == 1
    assert summary["labeled"] == (alias != "mri_knee")


def test_data_readme_is_generated_from_the_current_registry() -> None:
    """data/README.md must be regenerated (`medseg datasets --readme data/README.md`) when entries change."""
    from medseg.data.registry import load_registry, readme_markdown

    assert (REPO / "data/README.md").read_text() == readme_markdown(load_registry())
