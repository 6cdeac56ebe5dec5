"""Component ``sample``: write the synthetic MSD-layout phantom dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def sample(params: str, params_override: str, raw: Output[Dataset]) -> dsl.ContainerSpec:
    return dsl.ContainerSpec(image=DEFAULT_IMAGE, command=["medseg", "sample"],
                             args=["--out", raw.path, *settings_args(params, params_override)])
