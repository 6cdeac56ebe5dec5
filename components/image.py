"""What every component shares: the placeholder image (each pipeline sets ``<repository>:<git SHA>`` on
every task when it is compiled) and the arguments that pass the run's settings and Kubeflow's executor
input to ``medseg <step>``."""

from kfp import dsl

DEFAULT_IMAGE = "ghcr.io/medseg/medseg:unset"  # replaced on every task by pipelines.grid


def settings_args(params: str, params_override: str) -> list:
    """``--params-text`` (the run's params, compiled in and editable as a run parameter), the override a run
    sets on top, and ``{{$}}`` so the step records provenance (and metrics) on its output artifacts."""
    return ["--params-text", params, "--params-override", params_override,
            "--kfp-executor-input", dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER]
