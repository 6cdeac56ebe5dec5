"""Component ``report``: aggregate evaluated runs into the results report beside the paper."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from components.image import DEFAULT_IMAGE


@dsl.container_component
def report(runs: Input[Artifact], report_dir: Output[Artifact], table: Output[Markdown],
           page: Output[HTML]) -> dsl.ContainerSpec:
    """``table`` (Markdown) and ``page`` (HTML with the figures inlined) are rendered by the Kubeflow UI;
    ``report_dir`` holds the CSV files and the figures too."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "report"],
        args=["--runs", runs.path, "--out", report_dir.path, "--markdown", table.path, "--html", page.path],
    )
