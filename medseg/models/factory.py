"""Build a ready-to-train SAM: backbone, pretrained weights, then the strategy's modules and freezing."""

from __future__ import annotations

import warnings
from typing import Any

from medseg.errors import MedsegError
from medseg.models.checkpoints import load_encoder_weights, load_sam_weights
from medseg.models.segmenter import SamSegmenter
from medseg.models.strategies import PeftConfig, Strategy, apply_strategy, parse_strategy


def build_model(strategy_id: str, peft: PeftConfig, image_size: int, num_classes: int,
                mode: str = "automated", checkpoint: str | None = None,
                encoder_checkpoint: str | None = None, normalisation: str = "sam") -> SamSegmenter:
    """A segmenter for ``strategy_id``: SAM weights from ``checkpoint`` (random init with a loud
    warning when absent), optionally an encoder from ``encoder_checkpoint`` (e.g. SSLSAM), then the
    strategy's adapters/LoRA and ``requires_grad`` flags; inputs normalised as ``normalisation``
    (``medsam`` for MedSAM's weights)."""
    strategy = parse_strategy(strategy_id)
    model = SamSegmenter(strategy.backbone, image_size, num_classes, mode)
    model.set_normalisation(normalisation)
    if checkpoint:
        load_sam_weights(model, checkpoint)
    else:
        part = "everything but the image encoder starts" if encoder_checkpoint else f"{strategy.backbone} starts"
        warnings.warn(
            f"NO SAM CHECKPOINT CONFIGURED: {part} from RANDOM weights; results say "
            "nothing about SAM. Set finetune.checkpoint in params.yaml to a downloaded checkpoint.",
            stacklevel=2,
        )
    if encoder_checkpoint:
        load_encoder_weights(model, encoder_checkpoint)
    apply_strategy(model, strategy, peft)
    return model


def model_spec(strategy_id: str, peft: PeftConfig) -> dict[str, Any]:
    """What an exported checkpoint records to rebuild the architecture."""
    return {"strategy": strategy_id, "peft": peft.to_dict()}


def parse_spec(spec: Any) -> tuple[Strategy, PeftConfig]:
    """The strategy and PEFT settings that a checkpoint's spec records, checked (MedsegError without
    a path: the caller names the file)."""
    values = spec.get("peft") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("strategy"), str) or not isinstance(values, dict):
        raise MedsegError("a spec needs 'strategy' (a strategy id) and 'peft' (a dict)")
    known = set(PeftConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known, key=str)
    if unknown:
        raise MedsegError(f"unknown PEFT keys {unknown}; known: {sorted(known)}")
    try:
        peft = PeftConfig(**values)
    except MedsegError as exc:
        raise MedsegError(f"peft.{(exc.path or '').removeprefix('models.')}: {exc.problem}") from exc
    return parse_strategy(spec["strategy"]), peft


def model_from_spec(spec: dict[str, Any], image_size: int, num_classes: int, mode: str,
                    candidates: bool = False) -> SamSegmenter:
    """The architecture of an exported checkpoint (weights not loaded): a SAM strategy or a baseline."""
    if "baseline" in spec:
        from medseg.baselines.checkpoints import parse_baseline_spec
        from medseg.baselines.networks import BaselineSegmenter
        from medseg.baselines.nnunet_model import NnunetSegmenter, NnunetSpec

        if mode != "automated" or candidates:
            raise MedsegError("a baseline segments in automated mode only")
        baseline = parse_baseline_spec(spec)
        if isinstance(baseline, NnunetSpec):
            return NnunetSegmenter(baseline, image_size, num_classes)  # type: ignore[return-value]
        return BaselineSegmenter(baseline, image_size, num_classes)  # type: ignore[return-value]
    strategy, peft = parse_spec(spec)
    model = SamSegmenter(strategy.backbone, image_size, num_classes, mode, candidates)
    apply_strategy(model, strategy, peft)
    return model


def zeroshot_model(backbone: str, image_size: int, mode: str, checkpoint: str | None,
                   normalisation: str = "sam") -> SamSegmenter:
    """Original SAM with prompts and its three candidate masks (no fine-tuning), for the study's
    zero-shot rows (Tables 13 and 17); random init with a loud warning when ``checkpoint`` is absent."""
    model = SamSegmenter(backbone, image_size, 2, mode, candidates=True)
    model.set_normalisation(normalisation)
    if checkpoint:
        load_sam_weights(model, checkpoint)
    else:
        warnings.warn(f"NO SAM CHECKPOINT GIVEN: zero-shot {backbone} has RANDOM weights; its scores mean nothing.",
                      stacklevel=2)
    apply_strategy(model, parse_strategy(f"{backbone}_dec_vanilla"), PeftConfig())  # inserts nothing
    return model
