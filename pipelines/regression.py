"""The Kubeflow ``regression`` pipeline: the CI regression check (``medseg regress``) on the cluster.

For each model the commit pins (a ``ParallelFor`` over every ``models/<dataset>/<init>/<profile>/<mode>/<strategy>/
model.pt`` among the outputs of dvc.lock's current stages): ``pull`` the model and its dataset's ingested data
(``data/processed/<dataset>``) at the versions the image's commit pins, and ``evaluate`` it on the test split;
then one ``regress`` task compares the collected evaluations with the baseline.

The image holds no git history, so the baseline travels as the run parameter ``baseline``, a baseline file's
text (``{"runs": {run: {metric: value}}}``, e.g. an earlier ``regress.json``). Its compiled-in default is the file
``regress.baseline_file`` names, else the evaluations the compiled commit records (``results/runs``, what its
``dvc repro`` wrote): a run then checks that the pinned models, evaluated by the commit's image on the cluster,
still score what the commit says within tolerance; to compare with another revision's evaluations, give that
revision's regress.json (or baseline file) as ``baseline``. The settings are the commit's params.yaml as it is
(no profile: they produced the recorded evaluations), compiled in as ``params``; ``kubeflow.regression`` sets
GPUs and parallelism. ``regress`` is not retried: its failure is the verdict.
"""


import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import dsl

from components import evaluate, regress
from medseg.errors import MedsegError
from medseg.eval.regress import FORMAT, baseline_from_file, run_values
from medseg.models.strategy_ids import parse_strategy
from medseg.params_kubeflow import REGRESSION
from medseg.params_schema import validated
from medseg.remote import pinned_outputs
from pipelines.grid import RESOURCE_KEYS, _configure, _pull

NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
PINNED_MODEL = re.compile(rf"models/((?:{NAME}/){{4}}{NAME})/model\.pt\Z")
BASELINE_NETWORKS = ("unet", "swinunet", "nnunet")  # trained by `medseg baseline`: kubeflow.gpu.baseline
MAX_BASELINE_TEXT = 100_000  # a task argument; Linux refuses a single one over 128 KiB


@dataclass(frozen=True)
class RegressionPlan:
    """What the compiled regression pipeline fixes: its image, settings, cells (one per pinned model) and the
    default baseline."""

    name: str
    image: str
    params_text: str
    cells: list[dict[str, str]]  # dataset, folder (models/<run>), strategy, processes, resources
    baseline_text: str
    gpu: bool
    kubeflow: dict[str, Any]
    parallelism: int


def expanded_stages(project: Path) -> set[str]:
    """The stages dvc.yaml expands to with the project's params.yaml, by DVC's own expansion: dvc.lock keeps the
    entries of matrix items that params no longer list, which pin no current run."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(project), uninitialized=True)
        try:
            return {stage.name for stage in repo.index.stages}
        finally:
            repo.close()
    except DvcException as exc:
        raise MedsegError(f"DVC cannot read the pipeline: {' '.join(str(exc).split())}", project / "dvc.yaml") from exc


def pinned_runs(project: Path) -> list[str]:
    """``<dataset>/<init>/<profile>/<mode>/<strategy>`` of every model dvc.lock pins for a current stage, each with
    its dataset's ingested data pinned too."""
    outputs = pinned_outputs(project, expanded_stages(project))
    runs = [match.group(1) for path in outputs if (match := PINNED_MODEL.match(path))]
    if not runs:
        raise MedsegError("pins no models (models/<dataset>/<init>/<profile>/<mode>/<strategy>/model.pt): run "
                          "`dvc repro`, commit dvc.lock and `dvc push` first", project / "dvc.lock")
    for run in runs:
        dataset = run.split("/")[0]
        if f"data/processed/{dataset}" not in outputs:
            raise MedsegError(f"pins the model {run} but not its test data, data/processed/{dataset}",
                              project / "dvc.lock")
    return runs


def _resources(settings: dict[str, Any], strategy: str, gpu: bool, where: Path) -> dict[str, Any]:
    kubeflow = settings["kubeflow"]
    if not gpu:
        return kubeflow["resources"]
    if strategy in BASELINE_NETWORKS:
        found = kubeflow["gpu"].get("baseline")
        if found is None:
            raise MedsegError(f"no GPU resources for the baseline {strategy} (kubeflow.gpu.baseline)", where)
        return found
    backbone = parse_strategy(strategy).backbone
    if backbone not in kubeflow["gpu"]["per_backbone"]:
        raise MedsegError(f"no GPU resources for {backbone} (kubeflow.gpu.per_backbone)", where)
    return kubeflow["gpu"]["per_backbone"][backbone]


def default_baseline(settings: dict[str, Any], project: Path, runs: list[str]) -> str:
    """The compiled-in baseline: ``regress.baseline_file``'s, else the evaluations the commit records for ``runs``
    (a pinned model without one is an error: nothing to compare with)."""
    if settings["regress"]["baseline_file"]:
        baseline = baseline_from_file(project / settings["regress"]["baseline_file"])
        source, values = baseline.source["file"], baseline.runs
    else:
        source, values = "results/runs of the compiled commit", {}
        for run in runs:
            path = project / "results/runs" / run / "eval/metrics.json"
            if not path.is_file():
                raise MedsegError(f"the pinned model {run} has no recorded evaluation to compare with (`dvc repro` "
                                  "writes it; commit it)", path)
            try:
                metrics = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MedsegError(f"corrupt metrics file ({exc.__class__.__name__})", path) from exc
            values.update(run_values(metrics, run, path))
    text = json.dumps({"format": FORMAT, "source": source, "runs": values}, sort_keys=True)
    if len(text) > MAX_BASELINE_TEXT:
        raise MedsegError(f"the baseline of {len(runs)} runs takes {len(text)} characters, more than one task argument "
                          f"holds ({MAX_BASELINE_TEXT}): check fewer pinned runs per pipeline", project / "dvc.lock")
    return text


def regression_plan(params: dict[str, Any], image_tag: str, params_path: Path) -> RegressionPlan:
    """The plan of the regression pipeline for the project holding ``params_path`` (its dvc.lock and results/)."""
    settings = validated(params, str(params_path))
    project = params_path.resolve().parent
    kubeflow, options = settings["kubeflow"], settings["kubeflow"]["regression"]
    runs = pinned_runs(project)
    cells = []
    for run in runs:
        strategy = run.split("/")[-1]
        resources = _resources(settings, strategy, options["gpu"], params_path)
        cells.append({"dataset": run.split("/")[0], "folder": f"models/{run}", "strategy": strategy,
                      "processes": "1", **{key: str(resources[key]) for key in RESOURCE_KEYS}})
    return RegressionPlan(REGRESSION, f"{kubeflow['image_repository']}:{image_tag}", json.dumps(settings), cells,
                          default_baseline(settings, project, runs), bool(options["gpu"]), kubeflow,
                          int(options["parallelism"]))


def build(plan: RegressionPlan) -> Callable[..., Any]:
    """The pipeline function of ``plan``, ready for ``kfp.compiler.Compiler().compile``."""

    @dsl.pipeline(name=f"medseg-{plan.name}", description=__doc__)
    def pipeline(params: str = plan.params_text, params_override: str = "",
                 dvc_remote: str = plan.kubeflow["dvc_remote"], baseline: str = plan.baseline_text) -> None:
        settings = {"params": params, "params_override": params_override}
        with dsl.ParallelFor(items=plan.cells, parallelism=plan.parallelism) as cell:
            data = _pull(plan, "data/processed", cell.dataset, dvc_remote).set_display_name("pull test data")
            model = _pull(plan, cell.folder, "model.pt", dvc_remote).set_display_name("pull model")
            scored = _configure(evaluate(dataset=cell.dataset, strategy=cell.strategy, processed=data.outputs["data"],
                                         run=model.outputs["data"], **settings), plan, cell)
        _configure(regress(runs=dsl.Collected(scored.outputs["runs"]), baseline=baseline, **settings), plan,
                   retry=False)

    return pipeline
