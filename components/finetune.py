"""Component ``finetune``: fine-tune one SAM strategy on one validated dataset, one process per GPU.

Two forms of the one step: ``finetune`` starts from ``finetune.checkpoint`` (random init when null), and
``finetune_with_weights`` from SAM weights pulled from the DVC remote. (Kubeflow's backend does not honour
an optional artifact input in the command line, so the choice is made when the pipeline is compiled.)"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


def _spec(dataset: str, strategy: str, mode: str, processes: str, params: str, params_override: str,
          processed: Input[Dataset], run: Output[Model], extra: list) -> dsl.ContainerSpec:
    """``processes`` > 1 trains data-parallel on that many GPUs of the node (torchrun, one node)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", processes, "-m", "medseg.cli",
                 "finetune"],
        args=["--dataset", dataset, "--strategy", strategy, "--mode", mode, "--data", processed.path,
              "--out", run.path, *extra, *settings_args(params, params_override)],
    )


@dsl.container_component
def finetune(
    dataset: str, strategy: str, mode: str, processes: str, params: str, params_override: str,
    processed: Input[Dataset], validation: Input[Artifact], run: Output[Model],
) -> dsl.ContainerSpec:
    """``validation`` is an input only to order this step after a passing validation."""
    return _spec(dataset, strategy, mode, processes, params, params_override, processed, run, [])


@dsl.container_component
def finetune_with_weights(
    dataset: str, strategy: str, mode: str, processes: str, params: str, params_override: str,
    processed: Input[Dataset], validation: Input[Artifact], checkpoint: Input[Artifact], run: Output[Model],
) -> dsl.ContainerSpec:
    """``checkpoint``: the strategy's SAM weights, pulled at the version the commit pins."""
    return _spec(dataset, strategy, mode, processes, params, params_override, processed, run,
                 ["--checkpoint", checkpoint.path])
