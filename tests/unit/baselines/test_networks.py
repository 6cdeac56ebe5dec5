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
    for profile in ("full", "fewshot"):
        model = root / f"models/sample/scratch/{profile}/automated/unet"
        assert main(["baseline", "--network", "unet", "--profile", profile, "--out", str(model), *common]) == 0
        assert main(["evaluate", "--strategy", "unet", "--model", str(model),
                     "--runs-root", str(root / "runs"), *common]) == 0
    return root


def test_trained_baseline_is_exported_in_the_one_model_format(trained: Path) -> None:
    model, metadata = load_exported(trained / "models/sample/scratch/full/automated/unet/model.pt")
    assert isinstance(model, BaselineSegmenter) and model.backbone == "unet"
    assert metadata["strategy"] == "unet" and metadata["random_init"] is False and metadata["init"] == "scratch"
    assert metadata["profile"] == "full" and metadata["mode"] == "automated"
    summary = json.loads((trained / "models/sample/scratch/full/automated/unet/train_summary.json").read_text())
    assert summary["strategy"] == "unet" and summary["embedding_cache"] is False
    assert (summary["init"], summary["profile"]) == ("scratch", "full")


def test_unet_beats_an_all_background_prediction_on_the_sample(trained: Path) -> None:
    """All background scores 0 on every slice with an object; the UNet finds the lesion."""
    metrics = json.loads((trained / "runs/sample/scratch/full/automated/unet/eval/metrics.json").read_text())
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


def test_the_fewshot_profile_trains_on_the_fewshot_selection_in_its_own_folder(trained: Path) -> None:
    """--runs-root placed each evaluation by the model's own metadata: scratch/<profile>/automated."""
    full = json.loads((trained / "runs/sample/scratch/full/automated/unet/eval/metrics.json").read_text())
    few = json.loads((trained / "runs/sample/scratch/fewshot/automated/unet/eval/metrics.json").read_text())
    assert (full["fewshot"], few["fewshot"]) == (False, True) and few["mode"] == "automated"
    assert (full["profile"], few["profile"]) == ("full", "fewshot")
    assert few["epochs_run"] == 2 and full["epochs_run"] == 6  # finetune.fewshot's settings
    _, metadata = load_exported(trained / "models/sample/scratch/fewshot/automated/unet/model.pt")
    assert metadata["fewshot"] is True and metadata["profile"] == "fewshot"


def test_prompt_modes_and_unknown_profiles_are_refused_for_baselines(ingested_sample: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Baselines segment without prompts: they have no --mode, and --profile takes full or fewshot only."""
    args = ["baseline", "--network", "unet", "--dataset", "sample", "--data", str(ingested_sample),
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--mode", "box"])
    assert exited.value.code == 2 and "--mode" in capsys.readouterr().err
    assert main([*args, "--profile", "automated_5shot"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "unknown profile 'automated_5shot'" in error and "fewshot" in error
    assert not (tmp_path / "out").exists()


def test_a_baseline_reads_no_sam_checkpoint(ingested_sample: Path, tmp_path: Path) -> None:
    """finetune.checkpoint naming one SAM file per backbone (the study profile's) is no concern of a network
    trained from scratch: neither read nor asked to pick a backbone."""
    params = tiny_params()
    params["finetune"].update(max_epochs=1, work_dir=str(tmp_path / "work"),
                              checkpoint={"vit_h": None, "vit_b": str(tmp_path / "sam_vit_b.pth"), "vit_t": None})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["baseline", "--network", "unet", "--dataset", "sample", "--data", str(ingested_sample), "--out",
                 str(tmp_path / "out"), "--params", str(tmp_path / "params.yaml")]) == 0
    _, metadata = load_exported(tmp_path / "out/model.pt")
    assert (metadata["init"], metadata["profile"], metadata["random_init"]) == ("scratch", "full", False)

