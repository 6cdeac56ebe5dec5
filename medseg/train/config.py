"""Training settings from params.yaml (``finetune`` and ``models`` sections)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from medseg.errors import MedsegError
from medseg.models.segmenter import MODES
from medseg.models.strategies import PeftConfig
from medseg.train.prompted import PromptSettings


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

    def fingerprint(self, dataset: str, strategy: str) -> str:
        """A hash of the settings, dataset and strategy: a saved state resumes only the same run."""
        payload = json.dumps({"dataset": dataset, "strategy": strategy, **asdict(self)}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def warmup_factor(step: int, warmup_iters: int) -> float:
    """Linear warm-up from 1/warmup_iters to 1 over ``warmup_iters`` optimiser steps, then 1."""
    return 1.0 if warmup_iters <= 0 else min(1.0, (step + 1) / warmup_iters)
