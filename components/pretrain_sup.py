"""Component ``pretrain_sup``: SupSAM, prompt-based supervised training of SAM on the collected ingested datasets
(``pretrain_sup.datasets`` names which are read), one process per GPU."""

from typing import List  # noqa: UP035 (KFP reads List[...] annotations)

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


@dsl.container_component
def pretrain_sup(backbone: str, processes: str, params: str, params_override: str,
                 processed: Input[List[Dataset]], weights: Output[Model]) -> dsl.ContainerSpec:  # noqa: UP006
    """``processed``: the datasets' ingested slices, read from the executor input (a collected list);
    ``processes`` > 1 trains data-parallel on that many GPUs of the node (torchrun, one node)."""
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", processes, "-m", "medseg.cli",
                 "pretrain_sup"],
        args=["--backbone", backbone, "--out", weights.path, *settings_args(params, params_override)],
    )
