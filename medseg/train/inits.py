"""Initial weights of a fine-tuning run (the grid's ``init`` axis): SAM's, MedSAM's, SSLSAM's or SupSAM's.

``sam`` starts from ``finetune.checkpoint`` (SAM's release per backbone). The others read a folder with one
sub-folder per backbone, as the pipeline lays it out under ``models/pretrain/<init>/<backbone>/``:

- ``medsam``: ``medsam_<backbone>.pth``, MedSAM's release (ViT-B), put there by the user and tracked by DVC;
- ``sslsam``: ``encoder.pt`` from ``pretrain_mae``, loaded over SAM's weights of the backbone (it holds the
  image encoder only);
- ``supsam``: ``weights.pt`` from ``pretrain_sup``, every SAM weight.

A run is marked ``random_init`` when its weights trace back to no SAM checkpoint: a random-init SAM, or
pretraining that itself started from random init (the demo's), as the pretrained file records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError

INITS = ("sam", "medsam", "sslsam", "supsam")
PROFILES = ("full", "fewshot")  # all training slices, or the 5-shot selection (finetune.fewshot's settings)
INIT_FILES = {"medsam": "medsam_{backbone}.pth", "sslsam": "encoder.pt", "supsam": "weights.pt"}
PRODUCERS = {"medsam": "MedSAM's release (README \"SAM checkpoints\")", "sslsam": "medseg pretrain_mae",
             "supsam": "medseg pretrain_sup"}


@dataclass(frozen=True)
class InitWeights:
    """Where a run's starting weights come from."""

    init: str
    checkpoint: str | None  # every SAM weight (null: random init)
    encoder_checkpoint: str | None  # image-encoder weights loaded afterwards (sslsam)
    from_random: bool  # the pretrained file records that its pretraining started from random init


def check_init(init: str, profile: str = "full") -> None:
    """Refuse an unknown init or profile with the known ones."""
    if init not in INITS:
        raise MedsegError(f"unknown init {init!r}; known: {list(INITS)}")
    if profile not in PROFILES:
        raise MedsegError(f"unknown profile {profile!r}; known: {list(PROFILES)}")


def resolve_init(init: str, folder: str | Path | None, backbone: str, sam_checkpoint: str | None) -> InitWeights:
    """The weights of ``init`` for ``backbone``; ``folder`` holds the init's files (none for ``sam``)."""
    check_init(init)
    if init == "sam":
        if folder is not None:
            raise MedsegError("init sam starts from finetune.checkpoint: --init-weights is for medsam, sslsam and "
                              "supsam")
        return InitWeights("sam", sam_checkpoint, None, False)
    if folder is None:
        raise MedsegError(f"init {init} needs --init-weights: the folder of {PRODUCERS[init]}'s weights, one "
                          f"sub-folder per backbone (models/pretrain/{init})")
    path = init_file(init, Path(folder), backbone)
    recorded = _recorded(path, backbone)
    if init == "sslsam":
        return InitWeights(init, sam_checkpoint, str(path), sam_checkpoint is None or recorded)
    return InitWeights(init, str(path), None, recorded)


def init_file(init: str, folder: Path, backbone: str) -> Path:
    """``<folder>/<backbone>/<file>``; or ``<folder>/<file>`` (one backbone's folder: a Kubeflow artifact), or
    ``folder`` itself when it is the file."""
    name = INIT_FILES[init].format(backbone=backbone)
    if folder.is_file():
        return folder
    for path in (folder / backbone / name, folder / name):
        if path.is_file():
            return path
    raise MedsegError(f"no {init} weights for {backbone} (expected {folder / backbone / name}, from "
                      f"{PRODUCERS[init]})", folder)


def _recorded(path: Path, backbone: str) -> bool:
    """Whether a pretrained file says its pretraining began from random init; refuses another backbone's."""
    from medseg.models.checkpoints import safe_load

    payload: Any = safe_load(path, mmap=True)  # only the metadata is read
    if not isinstance(payload, dict) or not isinstance(payload.get("metadata"), dict):
        return False  # a release file (MedSAM's): plain weights, no pretraining record
    recorded = payload.get("backbone")
    if recorded is not None and recorded != backbone:
        raise MedsegError(f"holds {recorded} weights, not {backbone}", path)
    return bool(payload["metadata"].get("random_init", False))
