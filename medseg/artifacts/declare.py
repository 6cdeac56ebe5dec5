"""The ``artifacts:`` block of dvc.yaml: one model artifact per stage output that params.yaml makes.

Fine-tuned models (``finetune``, ``finetune_pretrained``), baselines (``baseline``) and the pretrained encoders
(``pretrain_mae``, ``pretrain_sup``) follow the same lists as the stages, so the block is generated
(``medseg artifacts --write``) and a test keeps the committed one current. Names follow DVC's rule for artifact
names (lower-case letters, digits, ``-`` and ``/``): the run's axes joined by ``-``, with ``_`` written as ``-``,
e.g. ``sample-sam-full-automated-vit-t-dec-vanilla``, ``sample-scratch-full-automated-unet``,
``pretrain-sslsam-vit-t``. ``meta`` keeps the axes as the run spells them (the model's recorded metadata is checked
against them when it is fetched) and where its metrics are.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import MedsegError
from medseg.params import section

ARTIFACT_NAME = re.compile(r"[a-z0-9]([a-z0-9-/]*[a-z0-9])?\Z")
AXES = ("dataset", "init", "profile", "mode", "strategy")
HEADER = ("# Model registry (README \"Model registry\"): one DVC model artifact per model the stages above write,\n"
          "# generated from params.yaml by `medseg artifacts --write` (do not edit by hand). `medseg register` and\n"
          "# `medseg promote` version and stage them with GTO tags; `medseg fetch_model` pulls one by name.\n")
ENCODER_FILES = {"sslsam": ("pretrain_mae", "encoder.pt"), "supsam": ("pretrain_sup", "weights.pt")}
INIT_WORDS = {"sam": "SAM's", "medsam": "MedSAM's", "sslsam": "SSLSAM's", "supsam": "SupSAM's"}
ENCODER_WORDS = {"sslsam": "SSLSAM image encoder, masked-image (MAE) pretraining",
                 "supsam": "SupSAM, SAM trained with point and box prompts on many datasets at once"}

Artifact = dict[str, Any]


def artifact_name(*parts: str) -> str:
    """``parts`` joined by ``-``, lower-case, ``_`` as ``-``; a one-line error when that is not a valid name."""
    name = "-".join(part.lower().replace("_", "-") for part in parts)
    return check_artifact_name(name, f"the artifact name of {'/'.join(parts)[:80]}")


def check_artifact_name(name: str, what: str = "artifact name") -> str:
    if not isinstance(name, str) or not ARTIFACT_NAME.match(name) or len(name) > 200:
        raise MedsegError(f"{what} {name!r:.80} is not a valid artifact name (lower-case letters, digits, '-' and '/', "
                          "starting and ending with a letter or digit)")
    return name


def _run(kind: str, stage: str, run: dict[str, str], desc: str) -> tuple[str, Artifact]:
    folder = "/".join(run[axis] for axis in AXES)
    meta = {"kind": kind, **run, "stage": stage, "metrics": f"results/runs/{folder}/eval/metrics.json"}
    return artifact_name(*(run[axis] for axis in AXES)), {
        "type": "model", "desc": desc, "path": f"models/{folder}/model.pt",
        "labels": [run[axis] for axis in AXES], "meta": meta}


def _sam_runs(params: dict[str, Any]) -> list[tuple[str, Artifact]]:
    """The ``finetune`` (init sam) and ``finetune_pretrained`` runs, in the stages' matrix order."""
    finetune = section(params, "finetune")
    pretrained = finetune.get("pretrained") or {}
    datasets = section(params, "ingest")["datasets"]
    grids = [("finetune", ["sam"], finetune), ("finetune_pretrained", pretrained.get("inits") or [], pretrained)]
    found = []
    for stage, inits, grid in grids:
        cells = product(datasets, inits, grid.get("profiles") or [], grid.get("modes") or [],
                        grid.get("strategies") or [])
        for cell in cells:
            run = dict(zip(AXES, cell, strict=True))
            item = "-".join(run[axis] for axis in AXES if axis != "init" or stage != "finetune")
            desc = (f"{run['strategy']} fine-tuned from {INIT_WORDS.get(run['init'], run['init'])} weights on "
                    f"{run['dataset']} ({run['profile']} training set, {run['mode']} mode)")
            found.append(_run("finetuned", f"{stage}@{item}", run, desc))
    return found


def _baselines(params: dict[str, Any]) -> list[tuple[str, Artifact]]:
    settings = section(params, "baseline")
    found = []
    for dataset in section(params, "ingest")["datasets"]:
        for network in settings.get("models") or []:
            for profile in settings.get("profiles") or []:
                run = {"dataset": dataset, "init": "scratch", "profile": profile, "mode": "automated",
                       "strategy": network}
                desc = f"{network} baseline trained from scratch on {dataset} ({profile} training set)"
                found.append(_run("baseline", f"baseline@{dataset}-{network}-{profile}", run, desc))
    return found


def _encoders(params: dict[str, Any]) -> list[tuple[str, Artifact]]:
    found = []
    for init, (stage, filename) in ENCODER_FILES.items():
        for backbone in section(params, stage).get("backbones") or []:
            folder = f"models/pretrain/{init}/{backbone}"
            found.append((artifact_name("pretrain", init, backbone), {
                "type": "model", "desc": f"{ENCODER_WORDS[init]} ({backbone})",
                "path": f"{folder}/{filename}", "labels": ["pretrain", init, backbone],
                "meta": {"kind": "encoder", "init": init, "backbone": backbone, "stage": f"{stage}@{backbone}",
                         "metrics": f"{folder}/train_summary.json"}}))
    return found


def declared(params: dict[str, Any]) -> dict[str, Artifact]:
    """Every artifact params.yaml's stages produce, by name, in dvc.yaml's stage order; two runs whose names
    coincide (e.g. datasets ``a_b`` and ``a-b``) are an error."""
    artifacts: dict[str, Artifact] = {}
    for name, artifact in [*_sam_runs(params), *_baselines(params), *_encoders(params)]:
        if name in artifacts and artifacts[name]["path"] != artifact["path"]:
            raise MedsegError(f"artifact name {name!r} would name both {artifacts[name]['path']} and "
                              f"{artifact['path']}: rename a dataset or strategy so that their names differ")
        artifacts[name] = artifact
    return artifacts


def block_text(artifacts: dict[str, Artifact]) -> str:
    """The generated block: the header comment, then ``artifacts:`` (flow style for labels and meta)."""
    body = yaml.safe_dump({"artifacts": artifacts}, sort_keys=False, default_flow_style=None, width=4096)
    return HEADER + body


def replace_block(text: str, block: str) -> str:
    """dvc.yaml's ``text`` with its top-level ``artifacts:`` block (and the generated header above it) replaced
    by ``block``, or ``block`` appended; every other line is kept as it is."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"artifacts\s*:", line)), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + block
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
               len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    header = HEADER.splitlines(keepends=True)
    if lines[max(0, start - len(header)):start] == header:
        start -= len(header)
    return "".join(lines[:start]) + block + "".join(lines[end:])


def committed_artifacts(dvc_yaml: Path) -> dict[str, Artifact]:
    """The ``artifacts`` mapping of a dvc.yaml file ({} when it has none)."""
    try:
        loaded = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise MedsegError("dvc.yaml not found: run from the project root", dvc_yaml) from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MedsegError(f"not valid YAML ({exc.__class__.__name__})", dvc_yaml) from exc
    found = loaded.get("artifacts") if isinstance(loaded, dict) else None
    return found if isinstance(found, dict) else {}


def differences(current: dict[str, Artifact], wanted: dict[str, Artifact]) -> list[str]:
    """What differs between dvc.yaml's artifacts and params.yaml's, one short phrase each."""
    notes = [f"missing {name}" for name in wanted if name not in current]
    notes += [f"not made by any stage: {name}" for name in current if name not in wanted]
    notes += [f"changed {name}" for name in wanted if name in current and current[name] != wanted[name]]
    return notes
