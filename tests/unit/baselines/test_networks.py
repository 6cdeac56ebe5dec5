"""UNet and SwinUNet baselines: built from params, trained by the shared engine, exported in the one model
format and scored by the shared evaluator, where the report finds them beside the paper's baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.baselines.networks import BaselineSegmenter, parse_baseline
from medseg.cli import main
from medseg.errors import MedsegError
from medseg.models.checkpoints import load_exported


@pytest.mark.parametrize("name", ["unet", "swinunet"])
def test_each_baseline_maps_images_to_class_logits(name: str) -> None:
    model = BaselineSegmenter(parse_baseline(name, tiny_params()["baseline"][name]), 64, 3)
    logits = model(torch.rand(2, 3, 64, 64) * 255)
    assert logits.shape == (2, 3, 64, 64) and model.mode == "automated" and not model.encoder_is_frozen()
    with pytest.raises(MedsegError, match="images only"):
        model(torch.rand(1, 3, 64, 64), torch.zeros(1, 4))


def test_bad_baselines_are_one_line_errors() -> None:
    with pytest.raises(MedsegError, match="unknown baseline 'vnet'"):
        parse_baseline("vnet")
    with pytest.raises(MedsegError, match=r"baseline.unet: unknown settings \['depth'\]"):
        parse_baseline("unet", {"depth": 3})
    with pytest.raises(MedsegError, match="multiple of 32"):
        BaselineSegmenter(parse_baseline("swinunet"), 48, 2)


@pytest.fixture(scope="module")
def trained(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A UNet trained on the tiny phantom through `medseg baseline`, then scored by `medseg evaluate`."""
    root = tmp_path_factory.mktemp("baseline")
    params = tiny_params()
    params["finetune"].update(max_epochs=6, work_dir=str(root / "work"))
    params["finetune"]["fewshot"].update(max_epochs=2, batch_size=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    common = ["--params", str(root / "params.yaml"), "--dataset", "sample", "--data", str(ingested_sample)]
    for mode in ("automated", "automated_5shot"):
        model = root / f"models/{mode}/unet"
        assert main(["baseline", "--network", "unet", "--mode", mode, "--out", str(model), *common]) == 0
        assert main(["evaluate", "--strategy", "unet", "--model", str(model),
                     "--runs-root", str(root / "runs"), "--mode", mode, *common]) == 0
    return root


def test_trained_baseline_is_exported_in_the_one_model_format(trained: Path) -> None:
    model, metadata = load_exported(trained / "models/automated/unet/model.pt")
    assert isinstance(model, BaselineSegmenter) and model.backbone == "unet"
    assert metadata["strategy"] == "unet" and metadata["random_init"] is False and metadata["init"] == "scratch"
    summary = json.loads((trained / "models/automated/unet/train_summary.json").read_text())
    assert summary["strategy"] == "unet" and summary["embedding_cache"] is False


def test_unet_beats_an_all_background_prediction_on_the_sample(trained: Path) -> None:
    """All background scores 0 on every slice with an object; the UNet finds the lesion."""
    metrics = json.loads((trained / "runs/sample/automated/unet/eval/metrics.json").read_text())
    assert metrics["strategy"] == "unet" and metrics["dice_mean"] > 0.1


def test_report_sets_the_baseline_beside_the_papers_baselines(trained: Path) -> None:
    from medseg.eval.report import write_report

    table = write_report(trained / "runs", trained / "report", compare_average=True).read_text()
    seventh = table.split("### Table 7")[1].split("###")[0]
    row = next(line for line in seventh.splitlines() if line.startswith("| sample |"))
    assert row.split("|")[2].strip().startswith("**") and "avg 71.63" in row  # ours beside the paper's UNet
    twelfth = table.split("### Table 12")[1].split("###")[0]
    row = next(line for line in twelfth.splitlines() if line.startswith("| sample |"))
    assert "avg 14.88" in row  # the 5-shot run beside the paper's 5-shot UNet


def test_the_5shot_mode_trains_on_the_fewshot_selection_in_its_own_folder(trained: Path) -> None:
    full = json.loads((trained / "runs/sample/automated/unet/eval/metrics.json").read_text())
    few = json.loads((trained / "runs/sample/automated_5shot/unet/eval/metrics.json").read_text())
    assert (full["fewshot"], few["fewshot"]) == (False, True) and few["mode"] == "automated"
    assert few["epochs_run"] == 2 and full["epochs_run"] == 6  # finetune.fewshot's profile
    _, metadata = load_exported(trained / "models/automated_5shot/unet/model.pt")
    assert metadata["fewshot"] is True


def test_prompt_modes_are_refused_for_baselines(ingested_sample: Path, tmp_path: Path) -> None:
    args = ["baseline", "--network", "unet", "--mode", "box", "--dataset", "sample", "--data", str(ingested_sample),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2 and not (tmp_path / "out").exists()
