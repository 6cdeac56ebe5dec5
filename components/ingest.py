"""Component ``ingest``: raw dataset -> slices, masks, manifest and patient-level splits."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def ingest(dataset: str, raw: Input[Dataset], processed: Output[Dataset]) -> dsl.ContainerSpec:
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "ingest"],
        args=["--dataset", dataset, "--raw", raw.path, "--out", processed.path],
    )
