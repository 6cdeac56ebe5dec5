"""Component ``finetune``: fine-tune one SAM strategy on one validated dataset, one process per GPU."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def finetune(
    dataset: str, strategy: str, mode: str, processes: str, params: str, params_override: str,
    processed: Input[Dataset], validation: Input[Artifact], run: Output[Model],
    checkpoint: Input[Artifact] = None,
) -> dsl.ContainerSpec:
    """``validation`` is an input only to order this step after a passing validation; ``checkpoint`` is the
    SAM weights pulled from the DVC remote (absent: ``finetune.checkpoint``, random init when null);
    ``processes`` > 1 trains data-parallel on that many GPUs of the node (torchrun)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", processes, "-m", "medseg.cli",
                 "finetune"],
        args=["--dataset", dataset, "--strategy", strategy, "--mode", mode, "--data", processed.path,
              "--out", run.path, dsl.IfPresentPlaceholder(input_name="checkpoint", then=["--checkpoint",
                                                                                          checkpoint.path]),
              *settings_args(params, params_override)],
    )
