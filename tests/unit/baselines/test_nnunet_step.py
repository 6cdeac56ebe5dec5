"""`medseg baseline --network nnunet`: nnU-Net's own planner and trainer on our split, a stopped run continued
with nnU-Net's --c, the model in the one format (weights-only), scored by the shared evaluator, in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from helpers import tiny_params
from medseg.baselines import nnunet
from medseg.baselines.nnunet_model import NnunetSegmenter, read_nnunet_checkpoint
from medseg.cli import main
from medseg.errors import MedsegError
from medseg.models.checkpoints import load_exported

RUN = "sample/scratch/full/automated/nnunet"  # <dataset>/<init>/<profile>/<mode>/<network>
NNUNET_TINY = {"trainer": nnunet.TINY_TRAINER, "processes": 0, "mirroring": False, "verify_dataset": False}


def _params(root: Path) -> Path:
    params = tiny_params()
    params["finetune"]["work_dir"] = str(root / "work")
    params["baseline"]["nnunet"] = dict(NNUNET_TINY)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def trained(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nnU-Net stopped after its first epoch (a preempted job), continued with --resume, then scored
    (about 80 s on 2 CPU cores)."""
    root = tmp_path_factory.mktemp("nnunet_step")
    common = ["--params", str(_params(root)), "--dataset", "sample", "--data", str(ingested_sample)]
    out = root / f"models/{RUN}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSEG_NNUNET_STOP_AFTER", "1")
        assert main(["baseline", "--network", "nnunet", "--out", str(out), *common]) == 2
    assert not out.exists()  # no partial output
    fold = root / f"work/{RUN}/nnUNet_results"
    assert list(fold.glob("*/*/fold_0/checkpoint_latest.pth"))  # what --resume continues from
    assert main(["baseline", "--network", "nnunet", "--out", str(out), "--resume", *common]) == 0
    assert main(["evaluate", "--strategy", "nnunet", "--model", str(out),
                 "--out", str(root / f"runs/{RUN}/eval"), *common]) == 0
    return root


def test_the_stopped_run_continued_from_its_checkpoint(trained: Path) -> None:
    logs = sorted((trained / f"models/{RUN}/nnunet").glob("training_log_*.txt"))
    assert len(logs) == 2 and "Epoch 1" in logs[1].read_text() and "Epoch 0" not in logs[1].read_text()
    assert not (trained / f"work/{RUN}").exists()  # removed once the outputs were in place


def test_nnunet_trained_on_our_train_val_split(trained: Path, ingested_sample: Path) -> None:
    manifest = pd.read_parquet(ingested_sample / "manifest.parquet")
    ids = dict(zip(manifest["row"], nnunet.case_ids(manifest), strict=True))
    splits = json.loads((trained / f"models/{RUN}/nnunet/splits_final.json").read_text())
    for role in ("train", "val"):
        assert splits[0][role] == [ids[row] for row in manifest.loc[manifest["split"] == role, "row"]]
    plans = json.loads((trained / f"models/{RUN}/nnunet/plans.json").read_text())
    assert "2d" in plans["configurations"]


def test_model_is_one_weights_only_file_with_nnunets_plans(trained: Path) -> None:
    model, metadata = load_exported(trained / f"models/{RUN}/model.pt")
    assert isinstance(model, NnunetSegmenter) and model.num_classes == 2 and model.baseline.trainer == NNUNET_TINY[
        "trainer"]
    assert metadata["strategy"] == "nnunet" and metadata["init"] == "scratch" and metadata["epoch"] == 1
    assert metadata["profile"] == "full" and metadata["fewshot"] is False
    assert metadata["protocol"]["image_size"] == 64 and metadata["synthetic_data"] is True  # what predict replays
    summary = json.loads((trained / f"models/{RUN}/train_summary.json").read_text())
    assert (summary["init"], summary["profile"], summary["mode"]) == ("scratch", "full", "automated")
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 1 and summary["trainer"] == NNUNET_TINY["trainer"]
    curve = (trained / f"models/{RUN}/training/plots/metrics/val/dice.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "dice"] and len(curve) == 3  # two epochs


def test_nnunet_beats_an_all_background_prediction_and_lands_in_table_7(trained: Path) -> None:
    from medseg.eval.report import write_report

    metrics = json.loads((trained / f"runs/{RUN}/eval/metrics.json").read_text())
    assert metrics["strategy"] == "nnunet" and metrics["dice_mean"] > 0.0 and metrics["best_epoch"] == 1
    table = write_report(trained / "runs", trained / "report", compare_average=True).read_text()
    seventh = table.split("### Table 7")[1].split("###")[0]
    row = next(line for line in seventh.splitlines() if line.startswith("| sample |"))
    assert "avg 76.94" in row  # ours beside the paper's nnU-Net average


def test_resume_with_changed_settings_is_refused(ingested_sample: Path, tmp_path: Path) -> None:
    from medseg.baselines.nnunet_run import RUN_RECORD

    work = tmp_path / f"work/{RUN}"
    work.mkdir(parents=True)
    (work / RUN_RECORD).write_text(json.dumps({"settings": "other", "data": "other"}))
    common = ["--params", str(_params(tmp_path)), "--dataset", "sample", "--data", str(ingested_sample)]
    assert main(["baseline", "--network", "nnunet", "--out", str(tmp_path / "out"), "--resume", *common]) == 2
    assert not (tmp_path / "out").exists() and (work / RUN_RECORD).is_file()


def test_a_crafted_plan_cannot_import_other_code(trained: Path, tmp_path: Path) -> None:
    payload = torch.load(trained / f"models/{RUN}/model.pt", weights_only=True)
    configuration = payload["spec"]["settings"]["plans"]["configurations"]["2d"]
    configuration["architecture"]["network_class_name"] = "os.system"
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(MedsegError, match=r"model.pt: network class 'os.system' is not one of"):
        load_exported(tmp_path / "model.pt")


def test_nnunets_checkpoints_load_weights_only(tmp_path: Path) -> None:
    torch.save({"network_weights": {"w": torch.zeros(1)}, "logging": {"x": [1.0]}}, tmp_path / "ok.pth")
    assert read_nnunet_checkpoint(tmp_path / "ok.pth")["logging"] == {"x": [1.0]}
    torch.save({"network_weights": {}, "evil": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(MedsegError, match=r"evil\.pth: cannot load the nnU-Net checkpoint safely"):
        read_nnunet_checkpoint(tmp_path / "evil.pth")


def test_an_unknown_trainer_fails_before_anything_runs(ingested_sample: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    params = _params(tmp_path)
    settings = yaml.safe_load(params.read_text())
    settings["baseline"]["nnunet"]["trainer"] = "nnUNetTrainer_typo"
    params.write_text(yaml.safe_dump(settings))
    args = ["baseline", "--network", "nnunet", "--params", str(params), "--dataset", "sample", "--data",
            str(ingested_sample), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "baseline.nnunet.trainer: nnU-Net trainer 'nnUNetTrainer_typo' is not defined" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()
    assert nnunet.check_trainer(nnunet.DEFAULT_TRAINER) is None and nnunet.check_trainer(nnunet.TINY_TRAINER) is None
