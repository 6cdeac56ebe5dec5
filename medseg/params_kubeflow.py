"""The ``kubeflow`` section of params.yaml: the image, the DVC remote, task resources, GPUs, retries and the grid
each compiled pipeline runs (``medseg.params_schema`` checks the rest)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from medseg.errors import MedsegError
from medseg.params_types import Backbone, Finite, Mode, Name, PretrainedParams, Profile, Section, Strategies

QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?\Z")


def _quantity(value: str) -> str:
    if not QUANTITY.match(value):
        raise ValueError("must be a Kubernetes quantity such as 2, 500m, 4G or 8Gi")
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]


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
    """What one compiled pipeline runs: a settings profile, datasets x strategies x modes x profiles from SAM's
    weights (one cell each), the baselines in the grid's profiles, and runs from pretrained inits."""

    profile: Name
    gpu: bool
    datasets: list[Name] = Field(min_length=1)
    strategies: Strategies = Field(min_length=1)
    modes: list[Mode] = Field(min_length=1)
    profiles: list[Profile] = Field(default_factory=lambda: ["full"], min_length=1)
    baselines: list[Literal["unet", "swinunet", "nnunet"]] = Field(default_factory=list)  # automated, each profile
    pretrained: PretrainedParams = Field(default_factory=PretrainedParams)
    parallelism: int = Field(ge=1)  # grid cells trained at once


class KubeflowRegression(Section):
    """The ``regression`` pipeline (not a grid): every model the commit pins, evaluated on its pinned test data, then
    ``regress``; GPUs per backbone (``kubeflow.gpu``) when ``gpu``, else the CPU resources."""

    gpu: bool = False
    parallelism: int = Field(default=4, ge=1)  # evaluations at once


REGRESSION = "regression"  # the regression pipeline's name: no grid may take it


class KubeflowParams(Section):
    image_repository: str = Field(pattern=r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$")
    dvc_remote: str = ""  # "" = the project's default DVC remote
    s3_secret: str = Field(default="medseg-s3", pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$")
    resources: KubeflowResources  # every CPU task (pull, ingest, validate, report; demo training)
    gpu: KubeflowGpu
    retries: KubeflowRetries
    regression: KubeflowRegression = Field(default_factory=KubeflowRegression)
    pipelines: dict[Name, KubeflowGrid]

    @field_validator("pipelines")
    @classmethod
    def _not_the_regression_pipeline(cls, value: dict[str, KubeflowGrid]) -> dict[str, KubeflowGrid]:
        if REGRESSION in value:
            raise ValueError(f"{REGRESSION!r} names the regression pipeline (kubeflow.regression): give the grid "
                             "another name")
        return value


UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
         "Ti": 2**40}


def quantity_mb(quantity: str) -> int:
    """A Kubernetes memory quantity (``8G``, ``7Gi``, ``512Mi``) in MB (2^20 bytes), rounded down."""
    match = QUANTITY.match(quantity)
    if not match:
        raise MedsegError(f"not a Kubernetes quantity: {quantity!r}")
    return int(float(match.group(1)) * UNITS[match.group(3) or ""] // 2**20)


