"""Component ``regress``: every collected evaluation beside a baseline, metric by metric (the CI regression check
on the cluster). A regression fails the task (exit 1), and so the run; the table is in the task's log either way,
and on a pass also a Markdown artifact for the UI."""

from typing import List  # noqa: UP035 (KFP reads List[...] annotations)

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def regress(params: str, params_override: str, baseline: str, runs: Input[List[Artifact]],  # noqa: UP006
            regress_dir: Output[Artifact], table: Output[Markdown]) -> dsl.ContainerSpec:
    """``baseline`` is a baseline file's content (``{"runs": {run: {metric: value}}}``, e.g. a regress.json): the
    image holds no git history to read a revision's evaluations from. ``runs`` is read from the executor input."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["medseg", "regress"],
        args=["--baseline-text", baseline, "--out", regress_dir.path, "--markdown", table.path,
              *settings_args(params, params_override)],
    )
