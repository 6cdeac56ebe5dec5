"""The schema of params.yaml: every setting has a type and a range, checked once when the file is read.

Unknown keys are refused (a typo would otherwise be ignored silently), and every problem is reported
as one line naming the file and the dotted key, e.g. ``params.yaml: finetune.lr: must be > 0``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import MedsegError
from medseg.params_kubeflow import KubeflowParams, quantity_mb
from medseg.params_registry import RegistryParams
from medseg.params_types import (
    Backbone,
    Device,
    Finite,
    Mode,
    Name,
    Pair,
    PretrainedParams,
    Profile,
    Section,
    Strategies,
    increasing,
)

VALIDATION_CHECKS = ("manifest_schema", "image_size", "image_dtype", "value_range", "mask_labels", "no_empty_masks",
                     "no_patient_in_two_splits", "no_duplicate_images_across_splits", "split_fractions",
                     "min_slices_per_split", "source_files_exist", "array_lengths")


class SampleParams(Section):
    datasets: list[Literal["sample"]] = Field(default_factory=lambda: ["sample"], max_length=1)
    num_patients: int = Field(ge=1, le=10_000)
    shape: tuple[Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)],
                 Annotated[int, Field(ge=1, le=1024)]]
    spacing_mm: tuple[Annotated[Finite, Field(gt=0)], Annotated[Finite, Field(gt=0)], Annotated[Finite, Field(gt=0)]]
    noise_hu: Finite = Field(ge=0)
    lesion_contrast_hu: Finite


class WindowChecks(Section):
    """Checks of the intensity window and percentile clip shared by ``ingest`` and its overrides."""

    @field_validator("intensity_window", check_fields=False)
    @classmethod
    def _window(cls, value: Pair | None) -> Pair | None:
        return increasing(value, "window")

    @field_validator("percentile_clip", check_fields=False)
    @classmethod
    def _clip(cls, value: Pair | None) -> Pair | None:
        if value is not None and not 0 <= value[0] < value[1] <= 100:
            raise ValueError(f"percentiles [{value[0]}, {value[1]}] must satisfy 0 <= low < high <= 100")
        return value


class ProtocolOverride(WindowChecks):
    """Per-dataset protocol settings (``ingest.overrides.<alias>``)."""

    image_size: int | None = Field(default=None, ge=16, le=4096, multiple_of=16)
    slice_axis: int | None = Field(default=None, ge=0, le=2)
    intensity_window: Pair | None = None
    percentile_clip: Pair | None = None
    drop_empty_slices: bool | None = None


class IngestParams(WindowChecks):
    datasets: list[Name] = Field(min_length=1)
    image_size: int = Field(ge=16, le=4096, multiple_of=16)
    intensity_window: Pair | None = None
    percentile_clip: Pair | None = None
    drop_empty_slices: bool = True
    split_fractions: list[Finite]
    fewshot_per_split: int = Field(default=5, ge=1)
    max_voxels: int = Field(ge=1)
    memory_limit_mb: int = Field(default=7168, ge=256)
    workers: int = Field(default=1, ge=1, le=256)
    on_error: Literal["fail", "skip"] = "fail"
    extra_registries: list[str] = Field(default_factory=list)
    overrides: dict[Name, ProtocolOverride] = Field(default_factory=dict)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if len(value) != 3:
            raise ValueError(f"{value}: give three fractions, train, val and test (e.g. [0.7, 0.1, 0.2])")
        if min(value) < 0 or value[0] <= 0:
            raise ValueError(f"{list(value)}: fractions must be >= 0 and the train fraction > 0")
        if abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"{list(value)}: train, val and test fractions must sum to 1, not {sum(value):g}")
        return value


class ValidateParams(Section):
    min_slices_per_split: int = Field(ge=0)
    split_tolerance: Finite = Field(ge=0, le=1)
    checks: dict[Literal[VALIDATION_CHECKS], Literal["block", "warn"]]  # type: ignore[valid-type]


class AugmentParams(Section):
    enabled: bool
    preset: Literal["paper", "released_code"] = "paper"
    equalize_probability: Finite = Field(ge=0, le=1)
    brightness: Finite = Field(ge=0, le=1)
    contrast: Finite = Field(ge=0, le=1)
    crop_scale: tuple[Annotated[Finite, Field(gt=0, le=4)], Annotated[Finite, Field(gt=0, le=4)]] = (0.5, 1.5)
    max_rotation_deg: Finite = Field(default=45.0, ge=0, le=180)

    @field_validator("crop_scale")
    @classmethod
    def _crop_scale(cls, value: Pair) -> Pair:
        return increasing(value, "crop scale")  # type: ignore[return-value]


class FewshotParams(Section):
    max_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    early_stopping_patience: int = Field(ge=0)


class PromptParams(Section):
    box_preset: Literal["paper", "released_code"] = "paper"
    box_noise_fraction: Finite = Field(default=0.1, ge=0, le=1)
    box_max_noise: Finite = Field(default=20.0, ge=0)
    largest_regions: int = Field(default=3, ge=1, le=64)


class FinetuneParams(Section):
    strategies: Strategies = Field(min_length=1)
    modes: list[Mode] = Field(min_length=1)
    profiles: list[Profile] = Field(default_factory=lambda: ["full"], min_length=1)
    pretrained: PretrainedParams = Field(default_factory=PretrainedParams)
    checkpoint: str | dict[Backbone, str | None] | None = None  # one file, or one per backbone
    classes: dict[Name, list[Annotated[str, Field(min_length=1)]]] = Field(default_factory=dict)
    max_epochs: int = Field(ge=1)
    early_stopping_patience: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: Finite = Field(gt=0, le=1)
    weight_decay: Finite = Field(ge=0)
    warmup_iters: int = Field(ge=0)
    lr_schedule: Literal["constant", "poly"] = "constant"
    augment: AugmentParams
    embedding_cache: bool
    fewshot: FewshotParams
    prompts: PromptParams = Field(default_factory=PromptParams)
    work_dir: str = Field(min_length=1)
    num_threads: int = Field(default=0, ge=0)
    device: Device = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    fused_attention: bool = True
    activation_checkpointing: bool = False


class UnetParams(Section):
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(min_length=2)
    strides: list[Annotated[int, Field(ge=1, le=4)]] = Field(min_length=1)
    num_res_units: int = Field(ge=0, le=8)

    @model_validator(mode="after")
    def _levels(self) -> UnetParams:
        if len(self.strides) != len(self.channels) - 1:
            raise MedsegError(f"strides ({len(self.strides)}) must be one fewer than channels ({len(self.channels)})")
        return self


class SwinUnetParams(Section):
    feature_size: int = Field(ge=12, le=384, multiple_of=12)
    depths: list[Annotated[int, Field(ge=1, le=24)]] = Field(min_length=4, max_length=4)
    num_heads: list[Annotated[int, Field(ge=1, le=64)]] = Field(min_length=4, max_length=4)


class NnunetParams(Section):
    trainer: str = Field(default="nnUNetTrainer", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    processes: int | None = Field(default=None, ge=0, le=256)
    mirroring: bool = True
    verify_dataset: bool = True


class BaselineParams(Section):
    models: list[Literal["unet", "swinunet", "nnunet"]] = Field(default_factory=list)
    profiles: list[Profile] = Field(default_factory=lambda: ["full"], min_length=1)
    lr: Annotated[Finite, Field(gt=0)] | None = None
    unet: UnetParams
    swinunet: SwinUnetParams
    nnunet: NnunetParams = Field(default_factory=NnunetParams)


class MaeDecoderParams(Section):
    dim: int = Field(ge=8, le=4096)
    depth: int = Field(ge=1, le=24)
    heads: int = Field(ge=1, le=64)

    @model_validator(mode="after")
    def _heads(self) -> MaeDecoderParams:
        if self.dim % self.heads:
            raise MedsegError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        return self


class PretrainMaeParams(Section):
    backbones: list[Backbone] = Field(default_factory=list)
    datasets: list[Name] = Field(min_length=1)
    image_size: int = Field(ge=64, le=4096, multiple_of=16)
    mask_ratio: Finite = Field(gt=0, lt=1)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    accumulation: int = Field(ge=1)
    lr: Finite = Field(gt=0, le=1)
    weight_decay: Finite = Field(ge=0)
    betas: list[Annotated[Finite, Field(ge=0, lt=1)]] = Field(min_length=2, max_length=2)
    warmup_epochs: int = Field(ge=0)
    crop_scale: list[Annotated[Finite, Field(gt=0, le=1)]] = Field(min_length=2, max_length=2)
    decoder: MaeDecoderParams
    checkpoint: str | None = None


class PretrainSupParams(Section):
    backbones: list[Backbone] = Field(default_factory=list)
    datasets: list[Name] = Field(min_length=1)
    max_epochs: int = Field(ge=1)
    early_stopping_patience: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    point_probability: Finite = Field(ge=0, le=1)


class ModelsParams(Section):
    adapter_ratio: Finite = Field(gt=0, le=1)
    adapter_mlp_scale: Finite = Field(ge=0)
    adapter_blocks: dict[Backbone, list[Annotated[int, Field(ge=0)]]]
    lora_rank: int = Field(ge=1, le=1024)
    lora_blocks: dict[Backbone, list[Annotated[int, Field(ge=0)]] | Literal["all"]]
    lora_train_fully: dict[Backbone, list[str]] = Field(default_factory=dict)


class EvaluateParams(Section):
    batch_size: int = Field(ge=1)
    empty: Literal["nan", "one"]
    nsd_tolerance_px: Finite = Field(ge=0)
    bootstrap_samples: int = Field(ge=2)
    confidence: Finite = Field(gt=0, lt=1)
    overlay_slices: int = Field(ge=0, le=64)
    device: Device = "auto"


REGRESS_METRICS = {"dice_mean": "higher", "dice_volume_mean": "higher", "iou_mean": "higher", "nsd_mean": "higher",
                   "hd95_mean": "lower"}  # what `medseg regress` may compare, and which way is better
DEFAULT_TOLERANCE = {"dice_mean": 0.01, "dice_volume_mean": 0.01, "iou_mean": 0.01, "nsd_mean": 0.01,
                     "hd95_mean": 2.0}
REVISION = r"^[A-Za-z0-9_][A-Za-z0-9._/~^-]{0,199}$"  # a branch, tag or commit (never an option; '..' is refused)


class RegressParams(Section):
    """The regression check (``medseg regress``): the baseline, the metrics compared and their tolerances."""

    baseline_rev: str = Field(default="main", pattern=REVISION)
    baseline_file: Annotated[str, Field(min_length=1)] | None = None
    metrics: list[Literal[tuple(REGRESS_METRICS)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(REGRESS_METRICS), min_length=1)
    tolerance: dict[str, Annotated[Finite, Field(ge=0)]] = Field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    new_runs: Literal["fail", "allow"] = "fail"
    dropped_runs: Literal["fail", "allow"] = "fail"
    repro_baselines: list[Name] = Field(default_factory=list)  # regress@<rev> stages of `dvc repro`; [] = none

    @field_validator("baseline_rev")
    @classmethod
    def _one_revision(cls, value: str) -> str:
        if ".." in value:
            raise ValueError(f"{value!r} is a range: give one revision (a branch, tag or commit)")
        return value

    @field_validator("tolerance")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(REGRESS_METRICS))
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join(REGRESS_METRICS)})")
        return value

    @model_validator(mode="after")
    def _every_metric_has_a_tolerance(self) -> RegressParams:
        missing = [metric for metric in self.metrics if metric not in self.tolerance]
        if missing:
            raise ValueError(f"tolerance.{missing[0]}: missing (every metric in regress.metrics needs a tolerance)")
        return self


class ExportOnnxParams(Section):
    """``medseg export_onnx``: the ONNX opset written, and the check each export passes against PyTorch."""

    opset: int = Field(default=18, ge=18, le=23)  # torch.onnx's dynamo exporter writes opset 18 and later
    tolerance: Finite = Field(default=1.0e-3, gt=0, le=1)  # largest |onnxruntime - PyTorch| of any output
    check_batch: int = Field(default=2, ge=2, le=64)  # seeded images checked (2 or more: the batch axis is free)


class Params(Section):
    seed: int = Field(ge=0, lt=2**32)
    sample: SampleParams
    ingest: IngestParams
    validate_: ValidateParams = Field(alias="validate")
    finetune: FinetuneParams
    baseline: BaselineParams
    pretrain_mae: PretrainMaeParams
    pretrain_sup: PretrainSupParams
    models: ModelsParams
    evaluate: EvaluateParams
    regress: RegressParams = Field(default_factory=RegressParams)
    registry: RegistryParams = Field(default_factory=RegistryParams)
    export_onnx: ExportOnnxParams = Field(default_factory=ExportOnnxParams)
    kubeflow: KubeflowParams

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _memory(self) -> Params:
        from medseg.data.memory import workers_that_fit

        workers_that_fit(self.ingest.max_voxels, self.ingest.memory_limit_mb)  # raises when none fits
        if ("sample" in self.ingest.datasets) != bool(self.sample.datasets):
            raise MedsegError("sample.datasets and ingest.datasets disagree about the demo phantom: list sample in "
                              "both or in neither (sample.datasets: [] drops the demo stage)")
        check_pretrained_inits(self.finetune.pretrained, self.pretrain_mae.backbones, self.pretrain_sup.backbones,
                               "finetune.pretrained")
        task_mb = quantity_mb(self.kubeflow.resources.memory_limit)
        if self.ingest.memory_limit_mb > task_mb:
            raise MedsegError(f"ingest.memory_limit_mb: {self.ingest.memory_limit_mb} MB exceeds the Kubeflow "
                              f"task's kubeflow.resources.memory_limit ({self.kubeflow.resources.memory_limit}, "
                              f"{task_mb} MB)")
        return self


INIT_SOURCES = {"sslsam": "pretrain_mae", "supsam": "pretrain_sup"}


def check_pretrained_inits(pretrained: PretrainedParams, mae_backbones: list[str], sup_backbones: list[str],
                           key: str) -> None:
    """Every init of ``pretrained`` exists for every backbone of its strategies: MedSAM is ViT-B only, and
    SSLSAM and SupSAM come from the pretraining steps' backbones."""
    from medseg.models.strategy_ids import parse_strategy

    made = {"medsam": ["vit_b"], "sslsam": mae_backbones, "supsam": sup_backbones}
    for init in pretrained.inits:
        for strategy in pretrained.strategies:
            backbone = parse_strategy(strategy).backbone
            if backbone not in made[init]:
                source = f"{INIT_SOURCES[init]}.backbones" if init in INIT_SOURCES else "MedSAM's release (ViT-B only)"
                raise MedsegError(f"{key}: no {init} weights for {strategy} ({backbone} is not in {source})")


REMOVED = {("finetune", "num_classes"): "no longer a setting: each dataset brings its classes (its label map, in "
                                      "ingest.json); to train fewer, list them in finetune.classes.<dataset>",
           ("finetune", "init"): "no longer a setting: runs from SAM's weights are the finetune stage; MedSAM, SSLSAM "
                                 "and SupSAM runs are listed in finetune.pretrained.inits",
           ("finetune", "encoder_checkpoint"): "no longer a setting: SSLSAM encoders come from pretrain_mae (list "
                                               "sslsam in finetune.pretrained.inits)",
           ("finetune", "fewshot", "enabled"): "no longer a setting: list fewshot in finetune.profiles (or "
                                              "finetune.pretrained.profiles, baseline.profiles)",
           ("baseline", "modes"): "no longer a setting: baselines run in automated mode on baseline.profiles "
                                  "(full, fewshot)"}


def _location(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _problem(error: dict[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return REMOVED.get(tuple(error["loc"]), "unknown setting (a typo?)")
    if error["type"] == "missing":
        return "missing setting"
    if error["type"] == "value_error":  # our own checks name the value already
        return message
    given = error.get("input")
    shown = repr(given) if isinstance(given, str | int | float | bool | list | tuple | None) else type(given).__name__
    return f"{message} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"


def validated(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The params, type-checked and range-checked, as plain data with defaults filled in; the first
    problems (at most three) are one MedsegError naming ``source`` and the dotted keys."""
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_location(e)}: {_problem(e)}" for e in exc.errors()]
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise MedsegError("; ".join(problems[:3]) + more, source) from None
    except MedsegError as exc:
        raise MedsegError(exc.problem, source) from None
    plain = params.model_dump(by_alias=True)
    plain["ingest"]["overrides"] = {alias: override.model_dump(exclude_unset=True)  # only what the user set
                                    for alias, override in params.ingest.overrides.items()}
    return plain

