"""Evaluation of an exported model and the results report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import peft_config
from medseg.errors import MedsegError
from medseg.eval.evaluate import evaluate
from medseg.eval.report import write_report
from medseg.eval.scoring import ScoreSettings
from medseg.models.checkpoints import export_checkpoint
from medseg.models.factory import model_spec, zeroshot_model
from medseg.models.segmenter import SamSegmenter

SPEC = model_spec("vit_t_dec_vanilla", peft_config())
SETTINGS = ScoreSettings(num_classes=2, bootstrap_samples=200)
RUN = "sample/sam/full/automated/vit_t_dec_vanilla"  # <dataset>/<init>/<profile>/<mode>/<strategy>


@pytest.fixture(scope="module")
def runs(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    export_checkpoint(SamSegmenter("vit_t", 64, 2), root / "model.pt", SPEC, {"mode": "automated", "epoch": 1})
    (root / "train_summary.json").write_text(json.dumps({"best_epoch": 1, "epochs_run": 3, "stopped_early": False}))
    evaluate("sample", "vit_t_dec_vanilla", ingested_sample, root / "model.pt",
             root / f"runs/{RUN}/eval", SETTINGS, batch_size=4)
    return root / "runs"


def test_evaluate_scores_every_test_slice(runs: Path, ingested_sample: Path) -> None:
    eval_dir = runs / f"{RUN}/eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    per_slice = pd.read_parquet(eval_dir / "per_slice.parquet")
    assert metrics["num_slices"] == (manifest["split"] == "test").sum() == len(per_slice)
    assert set(per_slice["patient"]) == set(manifest.loc[manifest["split"] == "test", "patient"])
    assert 0.0 <= metrics["dice_mean"] <= 1.0
    assert metrics["dice_mean"] == pytest.approx(per_slice["dice_mean"].mean())
    assert metrics["synthetic_data"] is True
    for name in ("iou", "hd95", "nsd"):
        assert f"{name}_class_1" in per_slice and f"{name}_mean" in metrics
    assert metrics["num_patients"] == 1 and metrics["dice_ci_low"] is None  # no interval from one patient


def test_evaluate_scores_each_test_volume_in_3d(runs: Path, ingested_sample: Path) -> None:
    eval_dir = runs / f"{RUN}/eval"
    per_volume = pd.read_parquet(eval_dir / "per_volume.parquet")
    per_slice = pd.read_parquet(eval_dir / "per_slice.parquet")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    details = json.loads((eval_dir / "metrics_details.json").read_text())
    assert sorted(per_volume["case"]) == sorted(per_slice["case"].unique())
    assert per_volume["num_slices"].sum() == len(per_slice) and details["num_volumes"] == len(per_volume)
    assert metrics["dice_volume_mean"] == pytest.approx(per_volume["dice_mean"].mean())


def test_metrics_json_holds_the_headline_and_the_details_file_the_rest(runs: Path) -> None:
    eval_dir = runs / f"{RUN}/eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    details = json.loads((eval_dir / "metrics_details.json").read_text())
    assert not set(metrics) & set(details) and len(metrics) <= 20  # one short row in `dvc metrics show`
    assert all(not isinstance(v, dict | list) for v in metrics.values())
    assert (metrics["epochs_run"], metrics["best_epoch"]) == (3, 1)  # train_summary.json beside model.pt
    assert (metrics["init"], metrics["profile"]) == ("sam", "full")  # a model recording neither: SAM, all slices
    assert details["dice_ci_note"] == "one test patient: no interval" and details["class_names"] == {"1": "lesion"}
    lesion = details["per_class"]["lesion"]
    per_slice = pd.read_parquet(eval_dir / "per_slice.parquet")
    assert lesion["dice_mean"] == pytest.approx(per_slice["dice_class_1"].mean())
    assert lesion["num_scored_slices"] == per_slice["dice_class_1"].notna().sum()


def test_a_train_summary_of_another_model_is_not_used(ingested_sample: Path, tmp_path: Path) -> None:
    export_checkpoint(SamSegmenter("vit_t", 64, 2), tmp_path / "model.pt", SPEC, {"epoch": 4})
    (tmp_path / "train_summary.json").write_text(json.dumps({"best_epoch": 2, "epochs_run": 9}))
    metrics = evaluate("sample", "s", ingested_sample, tmp_path / "model.pt", tmp_path / "eval", SETTINGS, 8,
                       overlay_slices=1)
    assert metrics["best_epoch"] == 4 and metrics["epochs_run"] is None


def test_overlays_are_drawn(runs: Path) -> None:
    from PIL import Image

    with Image.open(runs / f"{RUN}/eval/overlays.png") as image:
        assert image.format == "PNG" and image.width > 300 and len(image.getcolors(2**24)) > 50


def test_evaluate_refuses_a_model_of_another_input_size(ingested_sample: Path, tmp_path: Path) -> None:
    export_checkpoint(SamSegmenter("vit_t", 128, 2), tmp_path / "model.pt", SPEC, {})
    with pytest.raises(MedsegError, match="128px"):
        evaluate("sample", "s", ingested_sample, tmp_path / "model.pt", tmp_path / "eval", SETTINGS, 4)
    assert not (tmp_path / "eval").exists()


def test_report_tables_every_run(runs: Path, tmp_path: Path) -> None:
    table = write_report(runs, tmp_path / "report").read_text()
    metrics = json.loads((runs / f"{RUN}/eval/metrics.json").read_text())
    row = (f"| sample (synthetic) | automated | vit_t_dec_vanilla | sam | all | {100 * metrics['dice_mean']:.2f} "
           "(one test patient: no interval) |")
    assert row in table and table.split(row)[1].split("\n")[0].endswith("| 3 (best 1) |")
    assert "## Dice per class" in table and "| sample | automated | vit_t_dec_vanilla | sam | all | lesion |" in table
    assert "avg" not in table  # the sample is not a study dataset: no comparison with the paper's Average
    assert "not patient data" in table and "### Table 6" in table  # ViT-T automated from SAM's weights
    assert len(pd.read_csv(tmp_path / "report/report.csv")) == 1


@pytest.mark.parametrize("mode", ["point", "box"])
def test_prompted_models_are_scored_on_prompted_foreground_slices(mode: str, ingested_sample: Path,
                                                                   tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_checkpoint(SamSegmenter("vit_t", 64, 2, mode), tmp_path / "model.pt", SPEC, {"epoch": 0})
    metrics = evaluate("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "model.pt", tmp_path / "eval",
                       SETTINGS, 4)
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    per_slice = pd.read_parquet(tmp_path / "eval/per_slice.parquet")
    test = manifest[manifest["split"] == "test"]
    assert metrics["mode"] == mode and len(per_slice) == metrics["num_slices"] <= len(test)
    assert per_slice["dice_class_1"].notna().all()  # every scored slice has a prompted object
    again = evaluate("sample", "vit_t_dec_vanilla", ingested_sample, tmp_path / "model.pt", tmp_path / "eval2",
                     SETTINGS, 4)
    assert again["dice_mean"] == metrics["dice_mean"]  # the test prompts are reproducible
    assert len(pd.read_parquet(tmp_path / "eval/per_volume.parquet")) == 0  # prompted regions are not volumes


def test_original_sam_is_scored_by_highest_confidence_and_by_oracle(ingested_sample: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM"):
        model = zeroshot_model("vit_t", 64, "box", checkpoint=None)
    export_checkpoint(model, tmp_path / "model.pt", model_spec("vit_t_dec_vanilla", peft_config()), {"zeroshot": True})
    metrics = evaluate("sample", "vit_t_zeroshot", ingested_sample, tmp_path / "model.pt", tmp_path / "eval",
                       SETTINGS, 4)
    assert metrics["selection"] == "highest" and "oracle" in metrics
    per_slice = pd.read_parquet(tmp_path / "eval/per_slice.parquet").set_index(["case", "slice_index", "selection"])
    dice = per_slice["dice_class_1"].unstack("selection")
    assert (dice["oracle"] >= dice["highest"] - 1e-9).all()  # the oracle picks the best of the same candidates
    assert metrics["oracle"]["dice_mean"] >= metrics["dice_mean"]
