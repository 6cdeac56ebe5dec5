"""nnU-Net v2 baseline bridge: export, splits, and (slow) nnU-Net's own planning, training and prediction."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medseg.baselines import nnunet
from medseg.errors import MedsegError

DATASET_ID, NAME = 501, "sample"


def _manifest(data_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "manifest.parquet")


def _ids(manifest: pd.DataFrame, mask: pd.Series) -> list[str]:
    return [case for case, keep in zip(nnunet.case_ids(manifest), mask, strict=True) if keep]


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.fixture
def exported(ingested_sample: Path, tmp_path: Path) -> Path:
    return nnunet.export_dataset(ingested_sample, nnunet.nnunet_dirs(tmp_path).raw, DATASET_ID, NAME)


def test_export_writes_an_nnunet_raw_dataset(exported: Path, ingested_sample: Path, tmp_path: Path) -> None:
    manifest = _manifest(ingested_sample)
    training = manifest["split"].isin(["train", "val"])
    assert exported == tmp_path / "nnUNet_raw" / "Dataset501_sample"
    meta = json.loads((exported / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert meta["channel_names"] == {"0": "zscore"}
    assert meta["file_ending"] == ".png" and meta["numTraining"] == int(training.sum())
    assert len(list((exported / "imagesTr").glob("*_0000.png"))) == int(training.sum())
    assert len(list((exported / "labelsTr").glob("*.png"))) == int(training.sum())
    assert len(list((exported / "imagesTs").glob("*_0000.png"))) == int((manifest["split"] == "test").sum())
    images, masks = np.load(ingested_sample / "images.npy"), np.load(ingested_sample / "masks.npy")
    first = nnunet.case_ids(manifest)[0]
    assert np.array_equal(_png(exported / "imagesTr" / f"{first}_0000.png"), images[0])
    assert np.array_equal(_png(exported / "labelsTr" / f"{first}.png"), masks[0])
    record = nnunet.read_export(exported)
    assert record["test"] == _ids(manifest, manifest["split"] == "test")
    assert record["test_rows"] == manifest.loc[manifest["split"] == "test", "row"].tolist()
    assert all(case.replace("-", "").replace("_", "").isalnum() for case in nnunet.case_ids(manifest))


def test_splits_fold0_is_our_train_val_split(exported: Path, ingested_sample: Path, tmp_path: Path) -> None:
    manifest = _manifest(ingested_sample)
    path = nnunet.write_splits(exported, nnunet.nnunet_dirs(tmp_path).preprocessed)
    assert path == tmp_path / "nnUNet_preprocessed" / "Dataset501_sample" / "splits_final.json"
    splits = json.loads(path.read_text())
    assert len(splits) == 1
    assert splits[0]["train"] == _ids(manifest, manifest["split"] == "train")
    assert splits[0]["val"] == _ids(manifest, manifest["split"] == "val")
    assert not set(splits[0]["train"]) & set(splits[0]["val"])


def test_fewshot_export_keeps_the_selection_and_the_whole_test_split(ingested_sample: Path, tmp_path: Path) -> None:
    manifest = _manifest(ingested_sample)
    dataset = nnunet.export_dataset(ingested_sample, tmp_path, 7, "fewshot", fewshot=True)
    record = nnunet.read_export(dataset)
    assert record["train"] == _ids(manifest, manifest["fewshot"] == "train")
    assert record["val"] == _ids(manifest, manifest["fewshot"] == "val")
    assert record["test"] == _ids(manifest, manifest["split"] == "test")
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == len(record["train"]) + len(
        record["val"])


def test_export_replaces_its_own_output_only(exported: Path, ingested_sample: Path, tmp_path: Path) -> None:
    raw = exported.parent
    assert nnunet.export_dataset(ingested_sample, raw, DATASET_ID, NAME) == exported  # re-export replaces
    with pytest.raises(MedsegError, match="taken by"):
        nnunet.export_dataset(ingested_sample, raw, DATASET_ID, "other")
    foreign = raw / "Dataset502_sample"
    foreign.mkdir()
    with pytest.raises(MedsegError, match="not an earlier export"):
        nnunet.export_dataset(ingested_sample, raw, 502, NAME)
    for bad_id, bad_name in ((0, NAME), (1000, NAME), (True, NAME), (5, "a b"), (5, "../x")):
        with pytest.raises(MedsegError, match=r"dataset (id|name)"):
            nnunet.export_dataset(ingested_sample, raw, bad_id, bad_name)


def test_export_rejects_labels_missing_from_the_label_map(ingested_sample: Path, tmp_path: Path) -> None:
    data = tmp_path / "processed"
    shutil.copytree(ingested_sample, data)
    masks = np.load(data / "masks.npy")
    masks[0, 0, 0] = 7
    np.save(data / "masks.npy", masks)
    with pytest.raises(MedsegError, match=r"masks\.npy\[0\]: label\(s\) \[7\] missing"):
        nnunet.export_dataset(data, tmp_path / "raw", DATASET_ID, NAME)
    assert not (tmp_path / "raw" / "Dataset501_sample").exists()


def test_import_maps_labels_back_in_test_order(exported: Path, tmp_path: Path) -> None:
    record_path = exported / nnunet.EXPORT_RECORD
    record = json.loads(record_path.read_text())
    record["label_values"] = [0, 3]  # as for a dataset whose only class is stored as 3
    record_path.write_text(json.dumps(record))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    size = record["image_size"]
    for index, case in enumerate(record["test"]):
        Image.fromarray(np.full((size, size), index % 2, dtype=np.uint8)).save(predictions / f"{case}.png")
    masks = nnunet.import_predictions(predictions, exported)
    assert masks.shape == (len(record["test"]), size, size) and masks.dtype == np.uint8
    assert [int(m.max()) for m in masks] == [3 * (i % 2) for i in range(len(masks))]
    Image.fromarray(np.full((size, size), 2, dtype=np.uint8)).save(predictions / f"{record['test'][0]}.png")
    with pytest.raises(MedsegError, match="labels < 2"):
        nnunet.import_predictions(predictions, exported)
    (predictions / f"{record['test'][0]}.png").unlink()
    with pytest.raises(MedsegError, match="cannot read the nnU-Net prediction"):
        nnunet.import_predictions(predictions, exported)


def test_steps_need_their_inputs(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match="found none; run plan_and_preprocess first"):
        nnunet.train(tmp_path, DATASET_ID)
    (tmp_path / "nnUNet_preprocessed" / exported.name).mkdir(parents=True)
    with pytest.raises(MedsegError, match=r"missing nnUNetPlans\.json; run plan_and_preprocess first"):
        nnunet.train(tmp_path, DATASET_ID)
    with pytest.raises(MedsegError, match="run train first"):
        nnunet.predict(tmp_path, DATASET_ID)
    with pytest.raises(MedsegError, match="device"):
        nnunet.train(tmp_path, DATASET_ID, device="tpu")
    with pytest.raises(MedsegError, match="Dataset042_\\*, found none; run export_dataset first"):
        nnunet.plan_and_preprocess(tmp_path, 42)


def test_a_failing_nnunet_program_is_one_line_with_its_last_error(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(nnunet._ENTRY_POINTS, "nnUNetv2_train", "json:loads")  # fails at once: no argument
    with pytest.raises(MedsegError) as error:
        nnunet.run_nnunet("nnUNetv2_train", [], tmp_path, where=tmp_path / "fold_0")
    message = error.value.one_line()
    assert message.startswith(f"{tmp_path / 'fold_0'}: nnUNetv2_train failed (exit 1): TypeError")
    assert "\n" not in str(error.value)


def test_the_environment_is_set_for_nnunet_only(tmp_path: Path) -> None:
    before = dict(os.environ)
    env = nnunet.nnunet_env(tmp_path, processes=1)
    assert env["nnUNet_raw"] == str(tmp_path.resolve() / "nnUNet_raw")
    assert env["nnUNet_results"] == str(tmp_path.resolve() / "nnUNet_results")
    assert env["nnUNet_extTrainer"].split(os.pathsep)[0] == str(nnunet.TRAINERS_DIR)
    assert (nnunet.TRAINERS_DIR / "medseg_nnunet_trainers.py").is_file()
    assert env["nnUNet_def_n_proc"] == env["nnUNet_n_proc_DA"] == "1"
    sequential = nnunet.nnunet_env(tmp_path, processes=0)
    assert (sequential["nnUNet_def_n_proc"], sequential["nnUNet_n_proc_DA"]) == ("1", "0")
    assert "nnUNet_n_proc_DA" not in nnunet.nnunet_env(tmp_path) or "nnUNet_n_proc_DA" in before
    assert dict(os.environ) == before


@pytest.mark.slow
def test_nnunet_plans_trains_continues_and_predicts(exported: Path, ingested_sample: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's own planning and preprocessing, a tiny training stopped after its first epoch and
    continued, then prediction of the test slices (about 75 s on 2 CPU cores)."""
    preprocessed = nnunet.plan_and_preprocess(tmp_path, DATASET_ID, processes=1, verify=False)
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    record = nnunet.read_export(exported)
    assert splits == [{"train": record["train"], "val": record["val"]}]

    monkeypatch.setenv("MEDSEG_NNUNET_STOP_AFTER", "1")
    with pytest.raises(MedsegError, match=r"nnUNetv2_train failed .*stopped after epoch 1 of 2"):
        nnunet.train(tmp_path, DATASET_ID, trainer=nnunet.TINY_TRAINER, processes=0)
    fold = nnunet.model_folder(tmp_path, DATASET_ID, nnunet.TINY_TRAINER) / "fold_0"
    assert (fold / "checkpoint_latest.pth").is_file() and not (fold / "checkpoint_final.pth").exists()
    monkeypatch.delenv("MEDSEG_NNUNET_STOP_AFTER")
    checkpoint = nnunet.train(tmp_path, DATASET_ID, trainer=nnunet.TINY_TRAINER, continue_training=True,
                              processes=0)
    assert checkpoint == fold / "checkpoint_final.pth" and checkpoint.is_file()
    logs = sorted(fold.glob("training_log_*.txt"))
    assert len(logs) == 2 and "Epoch 1" in logs[1].read_text() and "Epoch 0" not in logs[1].read_text()

    predictions = nnunet.predict(tmp_path, DATASET_ID, trainer=nnunet.TINY_TRAINER, mirroring=False, processes=0)
    masks = nnunet.import_predictions(predictions, exported)
    manifest = _manifest(ingested_sample)
    size = int(np.load(ingested_sample / "images.npy", mmap_mode="r").shape[-1])
    assert masks.shape == (int((manifest["split"] == "test").sum()), size, size) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert np.array_equal(_in_process_prediction(tmp_path, ingested_sample, manifest), masks)


def _in_process_prediction(work: Path, data: Path, manifest: pd.DataFrame) -> np.ndarray:
    """The test slices segmented as `medseg evaluate` segments them: the exported spec and weights, nnU-Net's
    predictor in this process (no mirroring, as the nnUNetv2_predict call above)."""
    import torch

    from medseg.baselines.nnunet_model import NnunetSegmenter, NnunetSpec, read_nnunet_checkpoint

    folder = nnunet.model_folder(work, DATASET_ID, nnunet.TINY_TRAINER)
    payload = read_nnunet_checkpoint(folder / "fold_0/checkpoint_final.pth")
    plans, dataset_json = (json.loads((folder / name).read_text()) for name in ("plans.json", "dataset.json"))
    spec = NnunetSpec(plans, dataset_json, "2d", nnunet.TINY_TRAINER, (0, 1), use_mirroring=False)
    images = np.load(data / "images.npy")[manifest.loc[manifest["split"] == "test", "row"].to_numpy()]
    model = NnunetSegmenter(spec, images.shape[-1], 2)
    model.network.load_state_dict(payload["network_weights"])
    with torch.no_grad():
        slices = torch.from_numpy(images).float()[:, None].expand(-1, 3, -1, -1)
        return model.eval()(slices).argmax(dim=1).numpy().astype(np.uint8)
