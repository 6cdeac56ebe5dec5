"""The schema of params.yaml: every setting has a type and a range, checked once when the file is read.

Unknown keys are refused (a typo would otherwise be ignored silently), and every problem is reported
as one line naming the file and the dotted key, e.g. ``params.yaml: finetune.lr: must be > 0``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import MedsegError
from medseg.names import check_name

DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")
QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?\Z")
VALIDATION_CHECKS = ("manifest_schema", "image_size", "image_dtype", "value_range", "mask_labels", "no_empty_masks",
                     "no_patient_in_two_splits", "no_duplicate_images_across_splits", "split_fractions",
                     "min_slices_per_split", "source_files_exist", "array_lengths")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _name(value: str) -> str:
    try:
        return check_name(value, "name")
    except MedsegError as exc:
        raise ValueError(exc.problem) from None


def _device(value: str) -> str:
    if not DEVICE.match(value):
        raise ValueError("must be auto, cpu, mps, cuda or cuda:N")
    return value


def _quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError("must be a Kubernetes quantity such as 2, 500m, 4G or 8Gi")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Name = Annotated[str, AfterValidator(_name)]
Device = Annotated[str, AfterValidator(_device)]
Quantity = Annotated[str, AfterValidator(_quantity)]
Backbone = Literal["vit_h", "vit_b", "vit_t"]
# a prompt mode, alone (all training slices) or with _5shot (the 5-shot profile): names the run's folder
RunMode = Literal["automated", "point", "box", "automated_5shot", "point_5shot", "box_5shot"]
Pair = tuple[Finite, Finite]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


def _increasing(pair: Pair | None, what: str) -> Pair | None:
    if pair is not None and not pair[0] < pair[1]:
        raise ValueError(f"{what} [{pair[0]}, {pair[1]}] must be [low, high] with low < high")
    return pair


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
        return _increasing(value, "window")

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
        return _increasing(value, "crop scale")  # type: ignore[return-value]


class FewshotParams(Section):
    enabled: bool
    max_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    early_stopping_patience: int = Field(ge=0)


class PromptParams(Section):
    box_preset: Literal["paper", "released_code"] = "paper"
    box_noise_fraction: Finite = Field(default=0.1, ge=0, le=1)
    box_max_noise: Finite = Field(default=20.0, ge=0)
    largest_regions: int = Field(default=3, ge=1, le=64)


class FinetuneParams(Section):
    strategies: list[str] = Field(min_length=1)
    modes: list[RunMode] = Field(min_length=1)
    checkpoint: str | dict[Backbone, str | None] | None = None  # one file, or one per backbone
    encoder_checkpoint: str | None = None
    init: Name = "sam"
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

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: list[str]) -> list[str]:
        from medseg.models.strategy_ids import parse_strategy

        for strategy in value:
            try:
                parse_strategy(strategy)
            except MedsegError as exc:
                raise ValueError(exc.problem) from None
        return value


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
    modes: list[Literal["automated", "automated_5shot"]] = Field(default_factory=lambda: ["automated"], min_length=1)
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


class KubeflowResources(Section):
    cpu_request: Quantity
    cpu_limit: Quantity
    memory_request: Quantity
    memory_limit: Quantity


class GpuResources(KubeflowResources):
    gpus: int = Field(ge=1, le=16)  # per task: finetune runs one process per GPU (torchrun, one node)


class KubeflowGpu(Section):
    accelerator: str = Field(min_length=1)  # the resource name, e.g. nvidia.com/gpu
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    per_backbone: dict[Backbone, GpuResources]
    baseline: GpuResources | None = None  # baseline tasks (unet, swinunet, nnunet): one GPU each

    @field_validator("baseline")
    @classmethod
    def _one_gpu(cls, value: GpuResources | None) -> GpuResources | None:
        if value is not None and value.gpus != 1:
            raise ValueError("a baseline trains on one GPU (gpus: 1)")
        return value


class KubeflowRetries(Section):
    max_retries: int = Field(ge=0, le=10)
    backoff_seconds: int = Field(ge=1)
    backoff_factor: Finite = Field(ge=1)
    backoff_max_seconds: int = Field(ge=1)


class KubeflowGrid(Section):
    """What one compiled pipeline runs: a profile, datasets x strategies x modes (one cell each), and the
    baselines in the grid's automated modes (automated, automated_5shot)."""

    profile: Name
    gpu: bool
    datasets: list[Name] = Field(min_length=1)
    strategies: list[str] = Field(min_length=1)
    modes: list[RunMode] = Field(min_length=1)
    baselines: list[Literal["unet", "swinunet", "nnunet"]] = Field(default_factory=list)  # in the automated modes
    parallelism: int = Field(ge=1)  # grid cells trained at once

    _strategies = field_validator("strategies")(FinetuneParams._strategies.__func__)  # type: ignore[attr-defined]


class KubeflowParams(Section):
    image_repository: str = Field(pattern=r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$")
    dvc_remote: str = ""  # "" = the project's default DVC remote
    s3_secret: str = Field(default="medseg-s3", pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$")
    resources: KubeflowResources  # every CPU task (pull, ingest, validate, report; demo training)
    gpu: KubeflowGpu
    retries: KubeflowRetries
    pipelines: dict[Name, KubeflowGrid]


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
    kubeflow: KubeflowParams

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _memory(self) -> Params:
        from medseg.data.memory import workers_that_fit

        workers_that_fit(self.ingest.max_voxels, self.ingest.memory_limit_mb)  # raises when none fits
        if ("sample" in self.ingest.datasets) != bool(self.sample.datasets):
            raise MedsegError("sample.datasets and ingest.datasets disagree about the demo phantom: list sample in "
                              "both or in neither (sample.datasets: [] drops the demo stage)")
        task_mb = quantity_mb(self.kubeflow.resources.memory_limit)
        if self.ingest.memory_limit_mb > task_mb:
            raise MedsegError(f"ingest.memory_limit_mb: {self.ingest.memory_limit_mb} MB exceeds the Kubeflow "
                              f"task's kubeflow.resources.memory_limit ({self.kubeflow.resources.memory_limit}, "
                              f"{task_mb} MB)")
        return self


UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40}


def quantity_mb(quantity: str) -> int:
    """A Kubernetes memory quantity (``8G``, ``7Gi``, ``512Mi``) in MB (2^20 bytes), rounded down."""
    match = QUANTITY.match(quantity)
    if not match:
        raise MedsegError(f"not a Kubernetes quantity: {quantity!r}")
    return int(float(match.group(1)) * UNITS[match.group(3) or ""] // 2**20)


REMOVED = {("finetune", "num_classes"): "no longer a setting: each dataset brings its classes (its label map, in "
                                      "ingest.json); to train fewer, list them in finetune.classes.<dataset>"}


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

