"""Component ``sample``: write the synthetic MSD-layout phantom dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def sample(raw: Output[Dataset]) -> dsl.ContainerSpec:
    return dsl.ContainerSpec(image=DEFAULT_IMAGE, command=["medseg", "sample"], args=["--out", raw.path])
