"""Training settings from params.yaml (``finetune`` and ``models`` sections)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.models.checkpoints import MAX_CLASSES
from medseg.models.segmenter import MODES
from medseg.models.strategies import PeftConfig
from medseg.train.fingerprint import data_fingerprint, weights_fingerprint
from medseg.train.prompted import PromptSettings
from medseg.train.runtime import PRECISIONS


@dataclass(frozen=True)
class AugmentConfig:
    """The study's augmentations: histogram equalisation and colour jitter (intensity only)."""

    enabled: bool
    equalize_probability: float
    brightness: float
    contrast: float


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; its fingerprint guards ``--resume``."""

    max_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_iters: int
    early_stopping_patience: int
    num_classes: int
    checkpoint: str | None
    encoder_checkpoint: str | None
    embedding_cache: bool
    fewshot: bool
    augment: AugmentConfig
    num_threads: int
    seed: int
    peft: PeftConfig
    mode: str = "automated"
    init: str = "sam"
    prompts: PromptSettings = field(default_factory=PromptSettings)
    device: str = "auto"
    precision: str = "fp32"
    fused_attention: bool = True
    activation_checkpointing: bool = False

    @classmethod
    def from_params(cls, params: dict[str, Any], fewshot: bool | None = None, mode: str = "automated",
                    ) -> TrainConfig:
        """The run's settings; the few-shot profile (``finetune.fewshot``) overrides epochs, batch size
        and early stopping when enabled (in params or by ``fewshot=True``)."""
        if mode not in MODES:
            raise MedsegError(f"unknown mode '{mode}'; known: {list(MODES)}")
        finetune = params["finetune"]
        profile = finetune["fewshot"]
        use_fewshot = bool(profile["enabled"]) if fewshot is None else fewshot
        epochs_source = profile if use_fewshot else finetune
        return cls(
            max_epochs=int(epochs_source["max_epochs"]), batch_size=int(epochs_source["batch_size"]),
            early_stopping_patience=int(epochs_source["early_stopping_patience"]),
            lr=float(finetune["lr"]), weight_decay=float(finetune["weight_decay"]),
            warmup_iters=int(finetune["warmup_iters"]), num_classes=int(finetune["num_classes"]),
            checkpoint=finetune.get("checkpoint") or None,
            encoder_checkpoint=finetune.get("encoder_checkpoint") or None,
            embedding_cache=bool(finetune["embedding_cache"]), fewshot=use_fewshot,
            augment=AugmentConfig(**finetune["augment"]), num_threads=int(finetune.get("num_threads", 0)),
            seed=int(params["seed"]), peft=PeftConfig.from_params(params["models"]), mode=mode,
            init=str(finetune.get("init", "sam")),
            prompts=PromptSettings(**finetune.get("prompts", {})), device=str(finetune.get("device", "auto")),
            precision=str(finetune.get("precision", "fp32")),
            fused_attention=bool(finetune.get("fused_attention", True)),
            activation_checkpointing=bool(finetune.get("activation_checkpointing", False)),
        )

    def __post_init__(self) -> None:
        """Refuse values that would fail only mid-run (or after it), naming the params key."""
        profile = "finetune.fewshot" if self.fewshot else "finetune"
        for key, value, low, high in (
            (f"{profile}.max_epochs", self.max_epochs, 1, None), (f"{profile}.batch_size", self.batch_size, 1, None),
            (f"{profile}.early_stopping_patience", self.early_stopping_patience, 0, None),
            ("finetune.warmup_iters", self.warmup_iters, 0, None), ("finetune.num_threads", self.num_threads, 0, None),
            ("finetune.num_classes", self.num_classes, 2, MAX_CLASSES), ("seed", self.seed, 0, 2**63 - 1),
        ):
            _check_int(key, value, low, high)
        for key, value, low in (("finetune.lr", self.lr, 0.0), ("finetune.weight_decay", self.weight_decay, 0.0),
                                ("finetune.augment.brightness", self.augment.brightness, 0.0),
                                ("finetune.augment.contrast", self.augment.contrast, 0.0)):
            _check_float(key, value, low, strict=key == "finetune.lr")
        _check_float("finetune.augment.equalize_probability", self.augment.equalize_probability, 0.0, high=1.0)
        if self.mode not in MODES:
            raise MedsegError(f"unknown mode '{self.mode}'; known: {list(MODES)}")
        if self.precision not in PRECISIONS:
            raise MedsegError(f"must be one of {list(PRECISIONS)}, got {self.precision!r}", "finetune.precision")

    def fingerprint(self, dataset: str, strategy: str, data_dir: str | Path) -> dict[str, str]:
        """What a saved state must match to resume (``medseg.train.fingerprint``): the settings with
        dataset and strategy, the training data, and the contents of the checkpoint files."""
        settings = json.dumps({"dataset": dataset, "strategy": strategy, **asdict(self)}, sort_keys=True, default=str)
        return {"settings": hashlib.sha256(settings.encode()).hexdigest(), "data": data_fingerprint(data_dir),
                "weights": weights_fingerprint(self.checkpoint, self.encoder_checkpoint)}


def _check_int(key: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MedsegError(f"must be an integer, got {value!r:.60}", key)
    if value < low:
        raise MedsegError(f"must be >= {low}, got {value}", key)
    if high is not None and value > high:
        raise MedsegError(f"must be <= {high}, got {value}", key)


def _check_float(key: str, value: object, low: float, strict: bool = False, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MedsegError(f"must be a finite number, got {value!r:.60}", key)
    if value < low or (strict and value == low):
        raise MedsegError(f"must be {'>' if strict else '>='} {low:g}, got {value}", key)
    if high is not None and value > high:
        raise MedsegError(f"must be <= {high:g}, got {value}", key)


def warmup_factor(step: int, warmup_iters: int) -> float:
    """Linear warm-up from 1/warmup_iters to 1 over ``warmup_iters`` optimiser steps, then 1."""
    return 1.0 if warmup_iters <= 0 else min(1.0, (step + 1) / warmup_iters)
