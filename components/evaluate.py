"""Component ``evaluate``: test-split metrics of a fine-tuned model.

``runs`` is a runs root laid out as ``<dataset>/<mode>/<strategy>/eval``, as in dvc.yaml, so that ``report``
reads Kubeflow and DVC outputs alike; ``metrics`` carries Dice, IoU, HD95 and NSD for the UI to compare runs."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def evaluate(
    dataset: str, strategy: str, mode: str, params: str, params_override: str, processed: Input[Dataset],
    run: Input[Model], runs: Output[Artifact], metrics: Output[Metrics],
) -> dsl.ContainerSpec:
    """``mode`` only names the output directory: the model records the mode it was trained in."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "evaluate"],
        args=[
            "--dataset", dataset, "--strategy", strategy, "--data", processed.path,
            "--model", run.path, "--runs-root", runs.path, "--mode", mode,  # no Concat: the backend passes it as is
            *settings_args(params, params_override),
        ],
    )
