"""Component ``report``: aggregate evaluations into the results report beside the paper (one per dataset, then
one over those: a single task collecting the whole grid would pass the launcher more than a command line holds)."""

from typing import List  # noqa: UP035 (KFP reads List[...] annotations)

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def report(params: str, params_override: str, runs: Input[List[Artifact]], report_dir: Output[Artifact],  # noqa: UP006
           table: Output[Markdown], page: Output[HTML],
           more_runs: Input[List[Artifact]] = None,  # noqa: UP006
           pretrained_runs: Input[List[Artifact]] = None) -> dsl.ContainerSpec:  # noqa: UP006
    """``runs`` is a collected list of evaluations, or of earlier reports (which carry their runs), and
    ``more_runs`` and ``pretrained_runs`` others (a dataset's baselines and its runs from pretrained inits beside
    its SAM cells): the step reads their paths from the executor input.
    ``table`` (Markdown) and ``page`` (HTML with the figures inlined) are rendered by the Kubeflow UI;
    ``report_dir`` holds the CSV files and the figures too."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "report"],
        args=["--all-datasets", "--carry-runs", "--out", report_dir.path, "--markdown", table.path, "--html", page.path,
              *settings_args(params, params_override)],
    )
