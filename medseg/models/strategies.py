"""Fine-tuning strategies: ``<backbone>_<component>_<method>`` ids, e.g. ``vit_b_endec_lora``.

A strategy is data: the id picks the backbone (vit_h | vit_b | vit_t), the component
(dec: mask decoder only | endec: image encoder + mask decoder) and the method (vanilla | adapter |
lora | adapterall, the study's "A*": adapters in every encoder block). Placements and sizes come from
params.yaml (``models`` section) through :class:`PeftConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from medseg.errors import MedsegError
from medseg.models import peft
from medseg.models.strategy_ids import BACKBONES, COMPONENTS, METHODS, Strategy, parse_strategy  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class PeftConfig:
    """Adapter and LoRA sizes and placements (params.yaml ``models`` section)."""

    adapter_ratio: float = 0.25
    adapter_mlp_scale: float = 0.5
    adapter_blocks: dict[str, list[int]] = field(default_factory=dict)
    lora_rank: int = 4
    lora_blocks: dict[str, list[int] | str] = field(default_factory=dict)
    lora_train_fully: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse sizes and placements of the wrong type or range, naming the ``models`` key."""
        _check_number("adapter_ratio", self.adapter_ratio, 0.0, 4.0, low_inclusive=False)
        _check_number("adapter_mlp_scale", self.adapter_mlp_scale, 0.0, 16.0)
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int) or not 1 <= self.lora_rank <= 1024:
            raise MedsegError(f"must be an integer in 1..1024, got {self.lora_rank!r:.60}", "models.lora_rank")
        for name in ("adapter_blocks", "lora_blocks", "lora_train_fully"):
            placements = getattr(self, name)
            if not isinstance(placements, dict) or not all(
                    isinstance(key, str) and _is_placement(value, name) for key, value in placements.items()):
                expected = "module names" if name == "lora_train_fully" else "block indices (or 'all')"
                raise MedsegError(f"must map backbones to lists of {expected}, got {placements!r:.80}",
                                  f"models.{name}")

    @classmethod
    def from_params(cls, models: dict[str, Any]) -> PeftConfig:
        return cls(**{k: models[k] for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_number(name: str, value: Any, low: float, high: float, low_inclusive: bool = True) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (low <= value <= high if low_inclusive else low < value <= high):
        bracket = "[" if low_inclusive else "("
        raise MedsegError(f"must be a number in {bracket}{low:g}, {high:g}], got {value!r:.60}", f"models.{name}")


def _is_placement(value: Any, name: str) -> bool:
    if name == "lora_train_fully":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if value == "all":
        return True
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def all_strategies(backbones: list[str] | None = None) -> list[Strategy]:
    """Every backbone x component x method combination, in the study's Table 3 order."""
    return [Strategy(b, c, m) for b in (backbones or list(BACKBONES)) for c in COMPONENTS
            for m in ("vanilla", "adapter", "lora")]


def _resolve_blocks(selection: list[int] | str | None, count: int, what: str) -> list[int]:
    if selection == "all":
        return list(range(count))
    if not isinstance(selection, list) or any(not 0 <= i < count for i in selection):
        raise MedsegError(f"{what}: block indices {selection!r} must be 'all' or a list within 0..{count - 1}")
    return selection


def adapted_encoder_blocks(model: nn.Module, strategy: Strategy, config: PeftConfig) -> list[int]:
    """Encoder block indices that receive adapters (empty unless an endec adapter strategy)."""
    if strategy.component != "endec" or strategy.method not in ("adapter", "adapterall"):
        return []
    count = len(peft.encoder_blocks(model.image_encoder))
    selection = "all" if strategy.method == "adapterall" else config.adapter_blocks.get(strategy.backbone)
    return _resolve_blocks(selection, count, f"models.adapter_blocks.{strategy.backbone}")


def _insert_modules(model: nn.Module, strategy: Strategy, config: PeftConfig) -> None:
    if strategy.method in ("adapter", "adapterall"):
        blocks = adapted_encoder_blocks(model, strategy, config)
        peft.add_encoder_adapters(model.image_encoder, blocks, config.adapter_ratio, config.adapter_mlp_scale)
        peft.add_decoder_adapters(model.mask_decoder, config.adapter_ratio)
    elif strategy.method == "lora":
        if strategy.component == "endec":
            count = len(peft.encoder_blocks(model.image_encoder))
            blocks = _resolve_blocks(config.lora_blocks.get(strategy.backbone), count,
                                     f"models.lora_blocks.{strategy.backbone}")
            peft.add_encoder_lora(model.image_encoder, blocks, config.lora_rank)
        peft.add_decoder_lora(model.mask_decoder, config.lora_rank)


def _is_trainable(name: str, strategy: Strategy, config: PeftConfig) -> bool:
    """Which parameters a strategy trains (after its modules are inserted)."""
    in_decoder = name.startswith("mask_decoder.")
    if strategy.method == "vanilla":
        return in_decoder or strategy.component == "endec"
    if strategy.method in ("adapter", "adapterall"):
        return ".adapter." in name and (in_decoder or strategy.component == "endec")
    decoder_part = in_decoder and (".lora" in name or not name.startswith("mask_decoder.transformer."))
    if strategy.component == "dec":
        return decoder_part
    fully = tuple(f"{prefix}." for prefix in config.lora_train_fully.get(strategy.backbone, []))
    return decoder_part or ".lora" in name or name.startswith(("prompt_encoder.", *fully))


def apply_strategy(model: nn.Module, strategy: Strategy, config: PeftConfig) -> None:
    """Insert the strategy's modules and set ``requires_grad`` so exactly its parameters train.

    - vanilla: dec trains the mask decoder; endec trains everything.
    - adapter / adapterall: only the adapters train (decoder adapters; for endec also encoder adapters).
    - lora: LoRA updates plus the decoder outside its two-way transformer; endec adds the encoder's
      LoRA, the prompt encoder and the modules in ``models.lora_train_fully`` (ViT-T: conv stage 0).
    In point and box modes the prompt encoder stays frozen whatever the strategy.
    """
    _insert_modules(model, strategy, config)
    prompted = getattr(model, "mode", "automated") != "automated"
    for name, parameter in model.named_parameters():
        frozen_prompts = prompted and name.startswith("prompt_encoder.")  # as in the study
        parameter.requires_grad = _is_trainable(name, strategy, config) and not frozen_prompts


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def reference_code_depth_adapters(model: nn.Module, strategy: Strategy, config: PeftConfig) -> int:
    """Parameters of the 3D-only "depth" adapters that the study's released code builds in each adapted
    SAM ViT block (never trained in 2D; not built here) and that its Table 3 counts as trainable.
    TinyViT blocks had none."""
    if not hasattr(model.image_encoder, "blocks"):
        return 0
    blocks = adapted_encoder_blocks(model, strategy, config)
    dim = model.image_encoder.patch_embed.proj.out_channels
    hidden = int(dim * config.adapter_ratio)
    return len(blocks) * (2 * dim * hidden + hidden + dim)
