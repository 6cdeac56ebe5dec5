"""Component ``evaluate``: test-split metrics of a fine-tuned model.

``runs`` is a runs root laid out as ``<dataset>/<init>/<profile>/<mode>/<strategy>/eval`` (as the model records
them), as in dvc.yaml, so that ``report``
reads Kubeflow and DVC outputs alike; ``metrics`` carries Dice, IoU, HD95 and NSD for the UI to compare runs."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def evaluate(
    dataset: str, strategy: str, params: str, params_override: str, processed: Input[Dataset],
    run: Input[Model], runs: Output[Artifact], metrics: Output[Metrics],
) -> dsl.ContainerSpec:
    """The run's folder comes from the model: it records its init, profile and mode."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "evaluate"],
        args=[
            "--dataset", dataset, "--strategy", strategy, "--data", processed.path,
            "--model", run.path, "--runs-root", runs.path,
            *settings_args(params, params_override),
        ],
    )
