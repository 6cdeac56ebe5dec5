"""Component ``validate``: the data gate; a blocking failure stops the pipeline."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def validate(
    dataset: str, params: str, params_override: str, raw: Input[Artifact], processed: Input[Dataset],
    validation: Output[Artifact], summary: Output[Markdown],
) -> dsl.ContainerSpec:
    """``summary`` is the Markdown artifact the Kubeflow UI renders; ``validation`` holds the metrics
    JSON and the drift reports."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "validate"],
        args=["--dataset", dataset, "--data", processed.path, "--raw", raw.path, "--out", validation.path,
              "--markdown", summary.path, *settings_args(params, params_override)],
    )
