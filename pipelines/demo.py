"""The default pipeline: sample -> ingest -> validate -> finetune -> evaluate -> report.

The same steps as ``dvc.yaml``; each task runs ``medseg <step>`` in the project image."""


from collections.abc import Callable
from typing import Any

from kfp import dsl

from components import evaluate, finetune, ingest, report, sample, validate


def _configure(task: dsl.PipelineTask, image: str, resources: dict[str, str]) -> None:
    """Image and CPU/memory limits. The image tag names the code revision, and Kubeflow's cache
    key includes the image, so cached results never cross revisions."""
    task.set_container_image(image)
    task.set_cpu_request(resources["cpu_request"]).set_cpu_limit(resources["cpu_limit"])
    task.set_memory_request(resources["memory_request"]).set_memory_limit(resources["memory_limit"])


def build_demo_pipeline(kubeflow: dict[str, Any]) -> Callable[..., Any]:
    """The pipeline function, configured from params.yaml's ``kubeflow`` section."""
    image, resources = kubeflow["image"], kubeflow["resources"]

    @dsl.pipeline(name=kubeflow["pipeline_name"], description=__doc__)
    def demo_pipeline(dataset: str = "sample", strategy: str = "vit_t_dec_vanilla", mode: str = "automated") -> None:
        raw = sample()
        processed = ingest(dataset=dataset, raw=raw.outputs["raw"])
        checked = validate(dataset=dataset, raw=raw.outputs["raw"], processed=processed.outputs["processed"])
        trained = finetune(dataset=dataset, strategy=strategy, mode=mode, processed=processed.outputs["processed"],
                           validation=checked.outputs["validation"])
        scored = evaluate(dataset=dataset, strategy=strategy, mode=mode, processed=processed.outputs["processed"],
                          run=trained.outputs["run"])
        summary = report(runs=scored.outputs["runs"])
        for task in (raw, processed, checked, trained, scored, summary):
            _configure(task, image, resources)

    return demo_pipeline
