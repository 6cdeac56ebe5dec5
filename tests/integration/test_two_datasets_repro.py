"""`dvc repro` over a binary 2D dataset and a multi-class volume dataset with one params.yaml, in
automated and box modes, for a decoder-only and an encoder+decoder strategy (tiny synthetic stand-ins in
the datasets' download layouts: BUSI PNGs and the MSD hippocampus task)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from helpers import project_copy, run_tool, tiny_params

pytestmark = pytest.mark.slow  # about 3-6 minutes on 2 cores: 8 trainings and evaluations
MODES, STRATEGIES = ["automated", "box"], ["vit_t_dec_vanilla", "vit_t_endec_lora"]


def _busi(root: Path, count: int = 10) -> None:
    """Ultrasound-like PNGs with one bright lesion each and its 0/255 mask beside it."""
    rng = np.random.default_rng(0)
    folder = root / "Dataset_BUSI_with_GT" / "benign"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:48, :48]
    for n in range(1, count + 1):
        cy, cx, r = rng.integers(14, 34), rng.integers(14, 34), rng.integers(5, 10)
        lesion = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        image = np.clip(rng.normal(80, 20, (48, 48)) + 120 * lesion, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"benign ({n}).png")
        Image.fromarray((lesion * 255).astype(np.uint8)).save(folder / f"benign ({n})_mask.png")


def _hippocampus(root: Path, count: int = 6) -> None:
    """MSD Task04 volumes with two structures: label 1 (anterior) and label 2 (posterior)."""
    rng = np.random.default_rng(1)
    task = root / "Task04_Hippocampus"
    (task / "imagesTr").mkdir(parents=True)
    (task / "labelsTr").mkdir()
    training = []
    for n in range(1, count + 1):
        label = np.zeros((32, 32, 6), dtype=np.uint8)
        label[8:16, 8:20, 1:5], label[18:26, 12:24, 1:5] = 1, 2
        image = rng.normal(100, 15, label.shape) + 60 * (label == 1) + 120 * (label == 2)
        name = f"hippocampus_{n:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), task / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, np.eye(4)), task / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "Hippocampus", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
            "training": training, "test": []}
    (task / "dataset.json").write_text(json.dumps(meta))


def _params() -> dict:
    params = tiny_params()
    params["sample"]["datasets"] = []
    params["ingest"].update(datasets=["us_breast", "mri_hippocampus"], overrides={}, image_size=64)
    params["finetune"].update(modes=MODES, strategies=STRATEGIES, max_epochs=1, batch_size=4)
    params["evaluate"].update(bootstrap_samples=50, overlay_slices=2)
    return params


_run = run_tool


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's files (not the committed demo outputs), both datasets, one `dvc repro`."""
    root = tmp_path_factory.mktemp("two")
    _busi(root / "data/raw/us_breast")
    _hippocampus(root / "data/raw/mri_hippocampus")
    project_copy(root, _params(), skip=("results/", "models/"))
    _run(["dvc", "repro"], root)
    return root


def test_every_dataset_mode_and_strategy_is_trained_and_evaluated(project: Path) -> None:
    for dataset in ("us_breast", "mri_hippocampus"):
        for mode in MODES:
            for strategy in STRATEGIES:
                metrics = json.loads((project / f"results/runs/{dataset}/{mode}/{strategy}/eval/metrics.json")
                                     .read_text())
                assert metrics["dataset"] == dataset and metrics["mode"] == mode and metrics["num_slices"] > 0


def test_each_dataset_brings_its_classes(project: Path) -> None:
    import torch

    for dataset, classes in (("us_breast", ["background", "lesion"]),
                             ("mri_hippocampus", ["background", "anterior hippocampus", "posterior hippocampus"])):
        automated = torch.load(project / f"models/{dataset}/automated/vit_t_dec_vanilla/model.pt",
                               weights_only=True, map_location="cpu", mmap=True)
        assert automated["num_classes"] == len(classes) and automated["metadata"]["classes"] == classes
        box = torch.load(project / f"models/{dataset}/box/vit_t_endec_lora/model.pt", weights_only=True,
                         map_location="cpu", mmap=True)
        assert box["num_classes"] == 2 and box["metadata"]["dataset_classes"]["names"] == classes


def test_the_report_covers_both_datasets_and_no_demo(project: Path) -> None:
    report = (project / "results/report/report.md").read_text()
    assert "| us_breast" in report and "| mri_hippocampus" in report and "| sample" not in report
    assert "posterior hippocampus" in report
    assert "Running stage" not in _run(["dvc", "repro"], project).stdout
