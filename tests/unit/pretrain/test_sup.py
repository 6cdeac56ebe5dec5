"""SupSAM: SAM trained with a point or a box per slice on several datasets at once (tiny ViT-T, 64 px)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from helpers import hippocampus_layout, kill_after_first_commit, tiny_params
from medseg.cli import main
from medseg.data.ingest import ingest_dataset
from medseg.data.slice_dataset import SliceDataset
from medseg.errors import MedsegError
from medseg.models.factory import build_model
from medseg.models.strategies import PeftConfig
from medseg.pretrain.supervised import MixedPromptSegmenter, mixed_split
from medseg.train.config import TrainConfig
from medseg.train.prompted import PromptSettings


@pytest.fixture(scope="module")
def data_root(ingested_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ingested datasets with different label maps: the phantom (1 class), hippocampus (2 classes)."""
    root = tmp_path_factory.mktemp("sup")
    hippocampus_layout(root / "raw")
    params = tiny_params()
    ingest_dataset("mri_hippocampus", root / "raw", root / "data/mri_hippocampus", params["ingest"],
                   int(params["seed"]))
    (root / "data/sample").symlink_to(ingested_sample, target_is_directory=True)
    return root / "data"


def test_each_image_takes_its_own_kind_of_prompt() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MixedPromptSegmenter("vit_t", 64).eval()
    prompts = torch.tensor([[0, 30, 30, 0, 0], [1, 10, 10, 40, 40]], dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64) * 255, prompts)
        point_only = model(torch.rand(2, 3, 64, 64) * 255, prompts[[0, 0]])
    assert logits.shape == (2, 2, 64, 64) and point_only.shape == (2, 2, 64, 64)
    with pytest.raises(MedsegError, match=r"mixed-prompt model needs prompts of shape \(1, 5\)"):
        model(torch.rand(1, 3, 64, 64), torch.zeros(1, 4))


def test_points_and_boxes_are_drawn_per_item_and_datasets_keep_their_label_maps(data_root: Path) -> None:
    splits = [SliceDataset(data_root / name, "train") for name in ("sample", "mri_hippocampus")]
    items = mixed_split(splits, PromptSettings(), 0.5, seed=0, stream=0)
    rows = torch.stack([items[i][2] for i in range(len(items))])
    kinds = rows[:, 0]
    assert 0.2 < float(kinds.mean()) < 0.8  # both kinds, about half each
    assert torch.all(rows[kinds == 0][:, 3:] == 0)  # a point uses two coordinates
    assert all(set(torch.unique(items[i][1]).tolist()) <= {0, 1} for i in range(len(items)))  # the prompted object
    again = mixed_split(splits, PromptSettings(), 0.5, seed=0, stream=0)
    assert torch.equal(rows, torch.stack([again[i][2] for i in range(len(again))]))
    items.set_epoch(1)
    assert not torch.equal(rows, torch.stack([items[i][2] for i in range(len(items))]))  # new prompts each epoch


def _params(root: Path, epochs: int = 2) -> Path:
    params = tiny_params()
    params["pretrain_sup"].update(datasets=["sample", "mri_hippocampus"], max_epochs=epochs)
    params["finetune"].update(work_dir=str(root / "work"), num_threads=1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


def _command(data: Path, params: Path, out: Path, resume: bool = False) -> list[str]:
    return [str(Path(sys.executable).parent / "medseg"), "pretrain_sup", "--backbone", "vit_t", "--data-root",
            str(data), "--out", str(out), "--params", str(params), *(["--resume"] if resume else [])]


def test_trains_across_two_datasets_and_finetune_starts_from_its_weights(data_root: Path, tmp_path: Path) -> None:
    assert main(_command(data_root, _params(tmp_path), tmp_path / "supsam")[1:]) == 0
    summary = json.loads((tmp_path / "supsam/train_summary.json").read_text())
    assert summary["datasets"] == ["sample", "mri_hippocampus"] and summary["epochs_run"] == 2
    weights = torch.load(tmp_path / "supsam/weights.pt", weights_only=True)
    assert weights["metadata"]["init"] == "supsam" and weights["metadata"]["epoch"] == summary["best_epoch"]
    assert weights["backbone"] == "vit_t" and weights["metadata"]["random_init"] is True  # no SAM weights to start
    config = TrainConfig.from_params(tiny_params(), strategy="vit_t_endec_vanilla", init="supsam",
                                     init_weights=tmp_path / "supsam")  # the folder of this backbone's weights
    assert config.checkpoint == str(tmp_path / "supsam/weights.pt") and config.init_from_random
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model("vit_t_endec_vanilla", PeftConfig(), 64, 3, checkpoint=config.checkpoint)
    for key, value in model.image_encoder.state_dict().items():
        assert torch.equal(value, weights["model"][f"image_encoder.{key}"]), key


def test_resume_after_sigkill_ends_like_an_uninterrupted_run(data_root: Path, tmp_path: Path) -> None:
    params = _params(tmp_path, epochs=3)
    kill_after_first_commit(_command(data_root, params, tmp_path / "resumed"),
                            tmp_path / "work/pretrain_sup/vit_t/state.pt")
    assert not (tmp_path / "resumed").exists()
    subprocess.run(_command(data_root, params, tmp_path / "resumed", resume=True), check=True, capture_output=True)
    straight = _params(tmp_path / "b", epochs=3)
    subprocess.run(_command(data_root, straight, tmp_path / "straight"), check=True, capture_output=True)
    resumed, uninterrupted = (torch.load(tmp_path / name / "weights.pt", weights_only=True)["model"]
                              for name in ("resumed", "straight"))
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    curves = [(tmp_path / name / "training/plots/metrics/val/dice.tsv").read_text() for name in ("resumed", "straight")]
    assert curves[0] == curves[1]
