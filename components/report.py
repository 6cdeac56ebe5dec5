"""Component ``report``: aggregate evaluated runs into the results table (Markdown + CSV)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def report(runs: Input[Artifact], report_dir: Output[Artifact], table: Output[Markdown]) -> dsl.ContainerSpec:
    """``table`` is the Markdown artifact the Kubeflow UI renders; ``report_dir`` has the CSV too."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "report"],
        args=["--runs", runs.path, "--out", report_dir.path, "--markdown", table.path],
    )
