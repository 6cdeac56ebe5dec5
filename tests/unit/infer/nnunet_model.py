"""An nnU-Net model in the one model format without training it: nnU-Net's own fingerprint and experiment
planning (``nnUNetv2_plan_and_preprocess --no_pp``) on the phantom's exported slices, then the planned
network with random weights, exported as the baseline exports a trained one and flagged ``random_init``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medseg.baselines import nnunet
from medseg.baselines.nnunet_model import NAME as STRATEGY
from medseg.baselines.nnunet_model import NnunetSegmenter, NnunetSpec, nnunet_spec
from medseg.data.classes import dataset_labels, resolve_classes
from medseg.data.protocol import training_data_metadata
from medseg.data.slice_dataset import read_ingest_summary
from medseg.models.checkpoints import export_checkpoint

DATASET_ID, NAME = 502, "sample"


def plan_random_init_nnunet(ingested: Path, work: Path, out: Path) -> Path:
    """``out`` (a ``model.pt``): nnU-Net's 2d plans for the ingested slices, a random-init network."""
    raw = nnunet.export_dataset(ingested, nnunet.nnunet_dirs(work).raw, DATASET_ID, NAME)
    nnunet.run_nnunet("nnUNetv2_plan_and_preprocess", ["-d", str(DATASET_ID), "-c", nnunet.CONFIGURATION,
                                                       "--no_pp", "-npfp", "1"], work, processes=1, where=raw)
    plans = json.loads((nnunet.nnunet_dirs(work).preprocessed / raw.name / f"{nnunet.PLANS}.json").read_text())
    dataset_json = json.loads((raw / "dataset.json").read_text())
    spec = NnunetSpec(plans, dataset_json, nnunet.CONFIGURATION, nnunet.DEFAULT_TRAINER, (0, 1), use_mirroring=False)
    torch.manual_seed(0)
    export = nnunet.read_export(raw)
    model = NnunetSegmenter(spec, int(export["image_size"]), len(dataset_json["labels"]))
    ingest = read_ingest_summary(ingested)
    classes = resolve_classes(dataset_labels(ingest, ingested / "ingest.json"), None, NAME)
    metadata = {"dataset": NAME, "strategy": STRATEGY,
                "mode": "automated", "init": "scratch", "profile": "tiny", "epoch": 0, "random_init": True,
                **classes.to_metadata("automated"), **training_data_metadata(ingest)}
    out.parent.mkdir(parents=True, exist_ok=True)
    export_checkpoint(model, out, nnunet_spec(spec), metadata)
    return out
