"""Component ``pull``: one DVC-tracked path (a raw dataset, a SAM checkpoint) at the version the image's
commit pins, from the DVC remote; credentials come from a Kubernetes Secret as environment variables."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def pull(folder: str, name: str, remote: str, data: Output[Artifact]) -> dsl.ContainerSpec:
    """Pulls ``<folder>/<name>``; ``remote`` "" means the project's default DVC remote."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "pull"],
        args=["--folder", folder, "--target", name, "--out", data.path, "--remote", remote,
              "--kfp-executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER],
    )
