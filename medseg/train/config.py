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
from medseg.train.prompts import BOX_PRESETS
from medseg.train.runtime import PRECISIONS

AUGMENT_PRESETS = ("paper", "released_code")
LR_SCHEDULES = ("constant", "poly")
POLY_POWER = 0.9  # the released code's decay: lr x (1 - t/T)^0.9
@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations (``medseg.train.augment``). ``paper``: histogram equalisation and colour
    jitter (intensity only); ``released_code``: the same, then the released code's random resized crop
    (area ``crop_scale``) and rotation (up to ``max_rotation_deg``) of image and mask alike."""

    enabled: bool
    equalize_probability: float
    brightness: float
    contrast: float
    preset: str = "paper"
    crop_scale: tuple[float, float] = (0.5, 1.5)
    max_rotation_deg: float = 45.0

    @classmethod
    def from_params(cls, augment: dict[str, Any]) -> AugmentConfig:
        values = dict(augment)
        if "crop_scale" in values:
            values["crop_scale"] = tuple(values["crop_scale"])
        return cls(**values)

    def check(self) -> None:
        """Refuse values the transforms would reject mid-run, naming the params key."""
        key = "finetune.augment"
        for name, value, high in (("brightness", self.brightness, None), ("contrast", self.contrast, None),
                                  ("equalize_probability", self.equalize_probability, 1.0),
                                  ("max_rotation_deg", self.max_rotation_deg, 180.0)):
            _check_float(f"{key}.{name}", value, 0.0, high=high)
        if self.preset not in AUGMENT_PRESETS:
            raise MedsegError(f"must be one of {list(AUGMENT_PRESETS)}, got {self.preset!r}", f"{key}.preset")
        low, high = self.crop_scale
        if not 0 < low < high:
            raise MedsegError(f"must be [low, high] with 0 < low < high, got {list(self.crop_scale)}",
                              f"{key}.crop_scale")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; its fingerprint guards ``--resume``."""

    max_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_iters: int
    early_stopping_patience: int
    num_classes: int  # model outputs, background included; 0 = from the dataset's classes (see finetune)
    checkpoint: str | None
    encoder_checkpoint: str | None
    embedding_cache: bool
    fewshot: bool
    augment: AugmentConfig
    num_threads: int
    seed: int
    peft: PeftConfig
    mode: str = "automated"
    init: str = "sam"  # sam, medsam, sslsam, supsam (medseg.train.inits); scratch for a baseline network
    init_from_random: bool = False  # the init's pretraining started from random init (recorded in its file)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    device: str = "auto"
    precision: str = "fp32"
    fused_attention: bool = True
    activation_checkpointing: bool = False
    lr_schedule: str = "constant"
    classes: dict[str, list[str]] = field(default_factory=dict)  # per dataset: foreground classes to keep

    @classmethod
    def from_params(cls, params: dict[str, Any], profile: str = "full", mode: str = "automated",
                    strategy: str | None = None, init: str = "sam", init_weights: str | Path | None = None,
                    checkpoint: str | None = None) -> TrainConfig:
        """The run's settings on ``profile`` (``full``, or ``fewshot``: ``finetune.fewshot``'s epochs, batch
        size and early stopping on the 5-shot selection) from ``init``'s weights (``medseg.train.inits``;
        ``init_weights`` is the folder of a pretrained init). ``strategy`` picks its backbone's SAM weights when
        ``finetune.checkpoint`` names one file per backbone; ``checkpoint`` replaces them (Kubeflow's pulled
        copy)."""
        from medseg.train.inits import check_init, resolve_init

        check_init(init, profile)
        finetune = params["finetune"]
        fewshot = profile == "fewshot"
        epochs_source = finetune["fewshot"] if fewshot else finetune
        sam_weights = checkpoint or checkpoint_for(finetune.get("checkpoint"), strategy)
        weights = resolve_init(init, init_weights, _backbone(strategy) if init != "sam" else "", sam_weights)
        return cls(
            max_epochs=int(epochs_source["max_epochs"]), batch_size=int(epochs_source["batch_size"]),
            early_stopping_patience=int(epochs_source["early_stopping_patience"]),
            lr=float(finetune["lr"]), weight_decay=float(finetune["weight_decay"]),
            warmup_iters=int(finetune["warmup_iters"]), num_classes=0,
            checkpoint=weights.checkpoint, encoder_checkpoint=weights.encoder_checkpoint,
            embedding_cache=bool(finetune["embedding_cache"]), fewshot=fewshot,
            augment=AugmentConfig.from_params(finetune["augment"]), num_threads=int(finetune.get("num_threads", 0)),
            seed=int(params["seed"]), peft=PeftConfig.from_params(params["models"]), mode=mode,
            init=init, init_from_random=weights.from_random,
            prompts=PromptSettings(**finetune.get("prompts", {})), device=str(finetune.get("device", "auto")),
            precision=str(finetune.get("precision", "fp32")),
            fused_attention=bool(finetune.get("fused_attention", True)),
            activation_checkpointing=bool(finetune.get("activation_checkpointing", False)),
            lr_schedule=str(finetune.get("lr_schedule", "constant")),
            classes={str(k): [str(n) for n in v] for k, v in (finetune.get("classes") or {}).items()},
        )

    def __post_init__(self) -> None:
        """Refuse values that would fail only mid-run (or after it), naming the params key."""
        profile = "finetune.fewshot" if self.fewshot else "finetune"
        for key, value, low, high in (
            (f"{profile}.max_epochs", self.max_epochs, 1, None), (f"{profile}.batch_size", self.batch_size, 1, None),
            (f"{profile}.early_stopping_patience", self.early_stopping_patience, 0, None),
            ("finetune.warmup_iters", self.warmup_iters, 0, None), ("finetune.num_threads", self.num_threads, 0, None),
            ("seed", self.seed, 0, 2**63 - 1),
        ):
            _check_int(key, value, low, high)
        if self.num_classes != 0:  # 0: the dataset's classes
            _check_int("num_classes", self.num_classes, 2, MAX_CLASSES)
        _check_float("finetune.lr", self.lr, 0.0, strict=True)
        _check_float("finetune.weight_decay", self.weight_decay, 0.0)
        self.augment.check()
        if self.lr_schedule not in LR_SCHEDULES:
            raise MedsegError(f"must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}", "finetune.lr_schedule")
        if self.prompts.box_preset not in BOX_PRESETS:
            raise MedsegError(f"must be one of {list(BOX_PRESETS)}, got {self.prompts.box_preset!r}",
                              "finetune.prompts.box_preset")
        _check_int("finetune.prompts.largest_regions", self.prompts.largest_regions, 1, None)
        if self.mode not in MODES:
            raise MedsegError(f"unknown mode '{self.mode}'; known: {list(MODES)}")
        if self.precision not in PRECISIONS:
            raise MedsegError(f"must be one of {list(PRECISIONS)}, got {self.precision!r}", "finetune.precision")

    @property
    def profile(self) -> str:
        """``full`` (all training slices) or ``fewshot`` (the 5-shot selection)."""
        return "fewshot" if self.fewshot else "full"

    @property
    def run_folder(self) -> str:
        """``<init>/<profile>/<mode>``: where the run sits under its dataset, beside runs of other axes."""
        return f"{self.init}/{self.profile}/{self.mode}"

    def fingerprint(self, dataset: str, strategy: str, data_dir: str | Path) -> dict[str, str]:
        """What a saved state must match to resume (``medseg.train.fingerprint``): the settings with
        dataset and strategy, the training data, and the contents of the checkpoint files."""
        settings = json.dumps({"dataset": dataset, "strategy": strategy, **asdict(self)}, sort_keys=True, default=str)
        return {"settings": hashlib.sha256(settings.encode()).hexdigest(), "data": data_fingerprint(data_dir),
                "weights": weights_fingerprint(self.checkpoint, self.encoder_checkpoint)}


def checkpoint_for(setting: str | dict[str, str | None] | None, strategy: str | None) -> str | None:
    """The weights a strategy starts from: ``finetune.checkpoint`` is one file, or one per backbone
    (``{vit_t: checkpoints/mobile_sam.pt, vit_b: ...}``: a grid over backbones needs each its own)."""
    if not isinstance(setting, dict):
        return setting or None
    if strategy is None:
        if not any(setting.values()):
            return None
        raise MedsegError("names one file per backbone: give the strategy", "finetune.checkpoint")
    from medseg.models.strategy_ids import parse_strategy

    backbone = parse_strategy(strategy).backbone
    return setting.get(backbone) or None


def _backbone(strategy: str | None) -> str:
    if strategy is None:
        raise MedsegError("a pretrained init needs the strategy (its backbone picks the weights)")
    from medseg.models.strategy_ids import parse_strategy

    return parse_strategy(strategy).backbone


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


@dataclass
class WarmupSchedule:
    """``LambdaLR`` factor of optimiser step ``step``: linear warm-up over ``warmup_iters`` steps, then
    ``constant`` (1) or ``poly``, the released code's decay ``(1 - (step - warmup_iters) / total_steps)^0.9``
    where ``total_steps`` is every optimiser step of ``max_epochs`` epochs (``set_total_steps``; with early
    stopping the decay is still spread over max_epochs, as in the released code). A callable object, not a
    function, so that ``LambdaLR.state_dict`` saves its fields with the training state (exact resume)."""

    warmup_iters: int
    kind: str = "constant"
    total_steps: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters or self.kind == "constant":
            return warmup_factor(step, self.warmup_iters)
        decayed = step - self.warmup_iters
        if decayed == 0:
            return 1.0
        if self.total_steps <= 0:
            raise MedsegError("the poly learning-rate schedule needs the run's total optimiser steps (set_total_steps)")
        return max(0.0, 1.0 - decayed / self.total_steps) ** POLY_POWER


def set_total_steps(scheduler: Any, total_steps: int) -> None:
    """Give the ``WarmupSchedule`` factors of a ``LambdaLR`` the run's total optimiser steps."""
    for factor in scheduler.lr_lambdas:
        if isinstance(factor, WarmupSchedule):
            factor.total_steps = int(total_steps)
