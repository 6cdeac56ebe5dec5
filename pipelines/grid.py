"""The Kubeflow pipelines, ``demo`` and ``study``: one shape, a grid of datasets x strategies x modes x profiles.

For each dataset (a ``ParallelFor``): ``pull`` its raw data at the version the image's commit pins, then
``ingest`` and ``validate``; for each cell of the grid on it (a nested ``ParallelFor``): ``pull`` the
strategy's SAM weights when the params name them, ``finetune`` and ``evaluate``; for each baseline of the grid
(a second nested ``ParallelFor``, one GPU each), ``baseline`` and ``evaluate``; for each cell from a pretrained
init (a third, ``kubeflow.pipelines.<name>.pretrained``): ``pull`` the init's weights (MedSAM's release, or
the SSLSAM/SupSAM outputs of ``dvc repro pretrain_mae``/``pretrain_sup``, as the commit's dvc.lock pins them)
and the SAM weights when named, ``finetune`` and ``evaluate``; a ``report`` per dataset collects its
evaluations (``dsl.Collected``) and a final ``report`` collects those. The settings are
the commit's params.yaml with the pipeline's profile and grid applied (``kubeflow.pipelines.<name>``),
compiled in as the run parameter ``params``; a run may set ``params_override`` on top. Both are task inputs,
so Kubeflow's cache key includes them, and the image tag (the git SHA) too: cached results never cross
settings or code revisions.
"""


import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml
from kfp import dsl, kubernetes

from components import (
    baseline,
    evaluate,
    finetune,
    finetune_pretrained,
    finetune_pretrained_with_weights,
    finetune_with_weights,
    ingest,
    pull,
    report,
    validate,
)
from medseg.errors import MedsegError
from medseg.models.strategy_ids import parse_strategy
from medseg.params import merged
from medseg.params_schema import validated
from medseg.profiles import profile_file
from medseg.train.config import checkpoint_for
from medseg.train.inits import INIT_FILES

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
PRETRAINED_ROOT = PurePosixPath("models/pretrain")  # <init>/<backbone>/<file>, as dvc.yaml writes and pins them
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")


class Platform(Protocol):
    """What a task's settings come from (a grid's plan, or the regression pipeline's): the image, whether cells
    train and evaluate on GPUs, and the ``kubeflow`` section."""

    image: str
    gpu: bool
    kubeflow: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """Everything a compiled pipeline fixes: its name, image, settings, datasets and grid cells."""

    name: str
    image: str
    params_text: str
    datasets: list[str]
    cells: list[dict[str, str]]  # strategy, mode, profile, processes, resources, checkpoint folder/name ("" = none)
    baseline_cells: list[dict[str, str]]  # network (as strategy), profile, resources
    pretrained_cells: list[dict[str, str]]  # as cells, with the init and its weights' folder/name
    gpu: bool
    kubeflow: dict[str, Any]
    parallelism: int


def run_params(params: dict[str, Any], name: str, params_path: Path) -> dict[str, Any]:
    """params.yaml with the pipeline's profile and grid applied, checked against the schema."""
    grids = params["kubeflow"]["pipelines"]
    if name not in grids:
        raise MedsegError(f"no pipeline {name!r} (kubeflow.pipelines has {', '.join(sorted(grids))}; and "
                          "regression, the regression check)", params_path)
    grid = grids[name]
    profile = yaml.safe_load(profile_file(grid["profile"], params_path).read_text(encoding="utf-8")) or {}
    sample = [alias for alias in grid["datasets"] if alias == "sample"]
    profiles = grid.get("profiles", ["full"])
    pretrained = {"inits": [], "strategies": [], "modes": ["automated"], "profiles": ["full"],
                  **grid.get("pretrained", {})}  # none unless the grid lists them
    cells = {"sample": {"datasets": sample}, "ingest": {"datasets": grid["datasets"]},
             "finetune": {"strategies": grid["strategies"], "modes": grid["modes"], "profiles": profiles,
                          "pretrained": pretrained},
             "baseline": {"models": grid.get("baselines", []), "profiles": profiles}}
    return validated(merged(merged(params, profile), cells), f"{params_path} with kubeflow.pipelines.{name}")


def _cell(strategy: str, mode: str, profile: str, resources: dict[str, Any], checkpoint: str | None) -> dict[str, str]:
    """One grid cell: what it trains and with which resources, all strings (the driver copies only strings
    from loop items into the pod spec)."""
    path = PurePosixPath(checkpoint) if checkpoint else None
    return {"strategy": strategy, "mode": mode, "profile": profile, "processes": str(resources.get("gpus", 1)),
            **{key: str(resources[key]) for key in RESOURCE_KEYS},
            "checkpoint_folder": str(path.parent) if path else "", "checkpoint_name": path.name if path else ""}


def make_plan(params: dict[str, Any], name: str, image_tag: str, params_path: Path) -> Plan:
    """The plan of pipeline ``name`` for ``params`` (the commit's params.yaml, schema-checked)."""
    settings = run_params(params, name, params_path)
    kubeflow, grid = settings["kubeflow"], settings["kubeflow"]["pipelines"][name]
    finetune_settings = settings["finetune"]
    cells = [cell for strategy in grid["strategies"]
             for cell in _strategy_cells(settings, grid, strategy, (grid["modes"], grid["profiles"]), params_path)]
    pretrained = finetune_settings["pretrained"]
    pretrained_cells = [
        {**cell, "init": init, "init_folder": str(PRETRAINED_ROOT / init / parse_strategy(strategy).backbone),
         "init_name": INIT_FILES[init].format(backbone=parse_strategy(strategy).backbone)}
        for init in pretrained["inits"] for strategy in pretrained["strategies"]
        for cell in _strategy_cells(settings, grid, strategy, (pretrained["modes"], pretrained["profiles"]),
                                    params_path)]
    if len({bool(cell["checkpoint_name"]) for cell in cells + pretrained_cells}) > 1:
        raise MedsegError("finetune.checkpoint names weights for some backbones of the grid but not others: "
                          "name them for every backbone, or none (random init)", params_path)
    text = json.dumps(settings)  # one line: kfp's header comment breaks on multi-line defaults; YAML reads JSON
    return Plan(name, f"{kubeflow['image_repository']}:{image_tag}", text, list(grid["datasets"]), cells,
                _baseline_cells(settings, grid, params_path), pretrained_cells, bool(grid["gpu"]), kubeflow,
                int(grid["parallelism"]))


def _strategy_cells(settings: dict[str, Any], grid: dict[str, Any], strategy: str,
                    axes: tuple[list[str], list[str]], params_path: Path) -> list[dict[str, str]]:
    """A strategy's cells over ``axes`` (modes, profiles), with its backbone's resources and SAM weights."""
    kubeflow = settings["kubeflow"]
    backbone = parse_strategy(strategy).backbone
    if grid["gpu"] and backbone not in kubeflow["gpu"]["per_backbone"]:
        raise MedsegError(f"no GPU resources for {backbone} (kubeflow.gpu.per_backbone)", params_path)
    resources = kubeflow["gpu"]["per_backbone"][backbone] if grid["gpu"] else kubeflow["resources"]
    weights = checkpoint_for(settings["finetune"].get("checkpoint"), strategy)
    modes, profiles = axes
    return [_cell(strategy, mode, profile, resources, weights) for mode in modes for profile in profiles]


def _baseline_cells(settings: dict[str, Any], grid: dict[str, Any], params_path: Path) -> list[dict[str, str]]:
    """One cell per baseline and profile of the grid (automated mode), with the baseline GPU resources (or the
    CPU ones)."""
    resources = settings["kubeflow"]["gpu"].get("baseline") if grid["gpu"] else settings["kubeflow"]["resources"]
    if grid.get("baselines") and resources is None:
        raise MedsegError("no GPU resources for baselines (kubeflow.gpu.baseline)", params_path)
    return [_cell(network, "automated", profile, resources, None) for network in grid.get("baselines", [])
            for profile in grid["profiles"]]


def _configure(task: dsl.PipelineTask, plan: Platform, cell: Any | None = None,
               retry: bool = True) -> dsl.PipelineTask:
    """Image, CPU/memory (fixed, or a grid cell's: per backbone), GPUs on GPU nodes for a cell's task in a
    GPU pipeline, retries with backoff (unless ``retry`` is false: a task whose failure is a verdict)."""
    def pick(key: str) -> Any:
        return getattr(cell, key) if cell is not None else plan.kubeflow["resources"][key]

    task.set_container_image(plan.image)
    task.set_cpu_request(pick("cpu_request")).set_cpu_limit(pick("cpu_limit"))
    task.set_memory_request(pick("memory_request")).set_memory_limit(pick("memory_limit"))
    retries = plan.kubeflow["retries"]
    if retry:
        task.set_retry(num_retries=retries["max_retries"], backoff_duration=f"{retries['backoff_seconds']}s",
                       backoff_factor=float(retries["backoff_factor"]),
                       backoff_max_duration=f"{retries['backoff_max_seconds']}s")
    if plan.gpu and cell is not None:
        _on_gpu(task, plan, cell.processes)
    return task


def _on_gpu(task: dsl.PipelineTask, plan: Platform, gpus: Any) -> None:
    """GPUs, with the GPU nodes' selector and tolerations."""
    gpu = plan.kubeflow["gpu"]
    task.set_accelerator_type(gpu["accelerator"]).set_accelerator_limit(gpus)
    for key, value in gpu["node_selector"].items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu["tolerations"]:
        kubernetes.add_toleration(task, key=toleration.get("key"), operator=toleration.get("operator", "Equal"),
                                  value=toleration.get("value"), effect=toleration.get("effect"),
                                  toleration_seconds=toleration.get("tolerationSeconds"))


def _pull(plan: Platform, folder: Any, name: Any, remote: Any) -> dsl.PipelineTask:
    task = _configure(pull(folder=folder, name=name, remote=remote), plan)
    if plan.kubeflow["s3_secret"]:  # by reference: the driver injects it; nothing reads the Kubernetes API
        kubernetes.use_secret_as_env(task, secret_name=plan.kubeflow["s3_secret"],
                                     secret_key_to_env={key: key for key in S3_KEYS})
    return task


def _with_sam_weights(plan: Plan) -> bool:
    return bool((plan.cells + plan.pretrained_cells)[0]["checkpoint_name"])


def _train(plan: Plan, cell: Any, inputs: dict[str, Any], remote: Any) -> dsl.PipelineTask:
    """One fine-tuning task (after pulling its weights, when the params name them), sized by the cell."""
    if _with_sam_weights(plan):
        weights = _pull(plan, cell.checkpoint_folder, cell.checkpoint_name, remote)
        task = finetune_with_weights(checkpoint=weights.set_display_name("pull SAM weights").outputs["data"],
                                     **inputs)
    else:
        task = finetune(**inputs)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    return _configure(task, plan, cell)


def _train_pretrained(plan: Plan, cell: Any, inputs: dict[str, Any], remote: Any) -> dsl.PipelineTask:
    """One fine-tuning task from a pretrained init: its weights pulled as the commit pins them (and SAM's for the
    backbone, when the params name them: SSLSAM's encoder goes over them)."""
    init = _pull(plan, cell.init_folder, cell.init_name, remote).set_display_name("pull init weights")
    inputs = {**inputs, "init": cell.init, "init_weights": init.outputs["data"]}
    if _with_sam_weights(plan):
        weights = _pull(plan, cell.checkpoint_folder, cell.checkpoint_name, remote)
        task = finetune_pretrained_with_weights(
            checkpoint=weights.set_display_name("pull SAM weights").outputs["data"], **inputs)
    else:
        task = finetune_pretrained(**inputs)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory")
    return _configure(task, plan, cell)


def build(plan: Plan) -> Callable[..., Any]:
    """The pipeline function of ``plan``, ready for ``kfp.compiler.Compiler().compile``."""

    @dsl.pipeline(name=f"medseg-{plan.name}", description=__doc__)
    def pipeline(params: str = plan.params_text, params_override: str = "",
                 dvc_remote: str = plan.kubeflow["dvc_remote"]) -> None:
        settings = {"params": params, "params_override": params_override}
        with dsl.ParallelFor(items=plan.datasets, parallelism=plan.parallelism) as dataset:
            raw = _pull(plan, "data/raw", dataset, dvc_remote).set_display_name("pull raw data")
            processed = _configure(ingest(dataset=dataset, raw=raw.outputs["data"], **settings), plan)
            checked = _configure(validate(dataset=dataset, raw=raw.outputs["data"],
                                          processed=processed.outputs["processed"], **settings), plan)
            data = {"processed": processed.outputs["processed"], "validation": checked.outputs["validation"]}
            runs = {"runs": _cells_loop(plan, plan.cells, dataset, data, settings, dvc_remote)}
            if plan.baseline_cells:
                with dsl.ParallelFor(items=plan.baseline_cells, parallelism=plan.parallelism) as cell:
                    trained = _configure(baseline(dataset=dataset, network=cell.strategy, profile=cell.profile,
                                                  **data, **settings), plan, cell)
                    baseline_scored = _configure(evaluate(dataset=dataset, strategy=cell.strategy,
                                                          processed=data["processed"], run=trained.outputs["run"],
                                                          **settings), plan, cell)
                runs["more_runs"] = dsl.Collected(baseline_scored.outputs["runs"])
            if plan.pretrained_cells:
                runs["pretrained_runs"] = _cells_loop(plan, plan.pretrained_cells, dataset, data, settings,
                                                      dvc_remote)
            per_dataset = _configure(report(**runs, **settings), plan)
        _configure(report(runs=dsl.Collected(per_dataset.outputs["report_dir"]), **settings), plan)

    return pipeline


def _cells_loop(plan: Plan, cells: list[dict[str, str]], dataset: Any, data: dict[str, Any], settings: dict[str, Any],
                remote: Any) -> dsl.Collected:
    """A nested ``ParallelFor`` that fine-tunes and evaluates each cell on ``dataset``; its evaluations, collected."""
    with dsl.ParallelFor(items=cells, parallelism=plan.parallelism) as cell:
        inputs = {"dataset": dataset, "strategy": cell.strategy, "mode": cell.mode, "profile": cell.profile,
                  "processes": cell.processes, **data, **settings}
        pretrained = cells is plan.pretrained_cells
        trained = (_train_pretrained if pretrained else _train)(plan, cell, inputs, remote)
        scored = _configure(evaluate(dataset=dataset, strategy=cell.strategy, processed=data["processed"],
                                     run=trained.outputs["run"], **settings), plan, cell)
    return dsl.Collected(scored.outputs["runs"])
