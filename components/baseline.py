"""Component ``baseline``: train a baseline network (unet, swinunet, nnunet) on one validated dataset; ``evaluate``
then scores it like a SAM run (in automated mode on ``profile``, full or fewshot; its ``strategy`` the network's
name)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def baseline(dataset: str, network: str, profile: str, params: str, params_override: str, processed: Input[Dataset],
             validation: Input[Artifact], run: Output[Model]) -> dsl.ContainerSpec:
    """``validation`` is an input only to order this step after a passing validation."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "baseline"],
        args=["--dataset", dataset, "--network", network, "--profile", profile, "--data", processed.path,
              "--out", run.path, *settings_args(params, params_override)],
    )
