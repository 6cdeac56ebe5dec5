"""Component ``finetune``: fine-tune one SAM strategy on one validated dataset."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def finetune(
    dataset: str, strategy: str, mode: str, processed: Input[Dataset], validation: Input[Artifact],
    run: Output[Model],
) -> dsl.ContainerSpec:
    """``validation`` is an input only to order this step after a passing validation."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "finetune"],
        args=["--dataset", dataset, "--strategy", strategy, "--mode", mode, "--data", processed.path,
              "--out", run.path],
    )
