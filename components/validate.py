"""Component ``validate``: blocking quality checks; a failure stops the pipeline."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def validate(dataset: str, processed: Input[Dataset], validation: Output[Artifact]) -> dsl.ContainerSpec:
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "validate"],
        args=["--dataset", dataset, "--data", processed.path, "--out", validation.path],
    )
