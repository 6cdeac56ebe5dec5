"""Component ``ingest``: raw dataset -> slices, masks, manifest and patient-level splits."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def ingest(dataset: str, params: str, params_override: str, raw: Input[Artifact],
           processed: Output[Dataset]) -> dsl.ContainerSpec:
    """Refuses raw data that is not the named dataset's (the phantom is only ever ``sample``)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "ingest"],
        args=["--dataset", dataset, "--raw", raw.path, "--out", processed.path,
              *settings_args(params, params_override)],
    )
