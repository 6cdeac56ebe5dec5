"""Component ``finetune``: fine-tune one SAM strategy on one validated dataset, one process per GPU.

Four forms of the one step, chosen when the pipeline is compiled (Kubeflow's backend does not honour an
optional artifact input in the command line): ``finetune`` starts from ``finetune.checkpoint`` (random init
when null) and ``finetune_with_weights`` from SAM weights pulled from the DVC remote; ``finetune_pretrained``
starts from a pretrained init's weights (MedSAM's, SSLSAM's or SupSAM's, pulled at the version the commit's
dvc.lock or .dvc files pin), and ``finetune_pretrained_with_weights`` also takes the pulled SAM weights (an
SSLSAM encoder is loaded over them)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.image import DEFAULT_IMAGE, settings_args


def _spec(cell: tuple[str, str, str, str, str], settings: tuple[str, str], processed: Input[Dataset],
          run: Output[Model], extra: list) -> dsl.ContainerSpec:
    """``cell``: dataset, strategy, mode, profile, processes; ``processes`` > 1 trains data-parallel on that many
    GPUs of the node (torchrun, one node)."""
    dataset, strategy, mode, profile, processes = cell
    return dsl.ContainerSpec(
        image=DEFAULT_IMAGE,
        command=["torchrun", "--standalone", "--nnodes", "1", "--nproc-per-node", processes, "-m", "medseg.cli",
                 "finetune"],
        args=["--dataset", dataset, "--strategy", strategy, "--mode", mode, "--profile", profile,
              "--data", processed.path, "--out", run.path, *extra, *settings_args(*settings)],
    )


@dsl.container_component
def finetune(
    dataset: str, strategy: str, mode: str, profile: str, processes: str, params: str, params_override: str,
    processed: Input[Dataset], validation: Input[Artifact], run: Output[Model],
) -> dsl.ContainerSpec:
    """``validation`` is an input only to order this step after a passing validation."""
    return _spec((dataset, strategy, mode, profile, processes), (params, params_override), processed, run, [])


@dsl.container_component
def finetune_with_weights(
    dataset: str, strategy: str, mode: str, profile: str, processes: str, params: str, params_override: str,
    processed: Input[Dataset], validation: Input[Artifact], checkpoint: Input[Artifact], run: Output[Model],
) -> dsl.ContainerSpec:
    """``checkpoint``: the strategy's SAM weights, pulled at the version the commit pins."""
    return _spec((dataset, strategy, mode, profile, processes), (params, params_override), processed, run,
                 ["--checkpoint", checkpoint.path])


@dsl.container_component
def finetune_pretrained(
    dataset: str, strategy: str, mode: str, profile: str, init: str, processes: str, params: str,
    params_override: str, processed: Input[Dataset], validation: Input[Artifact], init_weights: Input[Artifact],
    run: Output[Model],
) -> dsl.ContainerSpec:
    """``init_weights``: the init's file for the strategy's backbone, pulled at the version the commit pins."""
    return _spec((dataset, strategy, mode, profile, processes), (params, params_override), processed, run,
                 ["--init", init, "--init-weights", init_weights.path])


@dsl.container_component
def finetune_pretrained_with_weights(
    dataset: str, strategy: str, mode: str, profile: str, init: str, processes: str, params: str,
    params_override: str, processed: Input[Dataset], validation: Input[Artifact], init_weights: Input[Artifact],
    checkpoint: Input[Artifact], run: Output[Model],
) -> dsl.ContainerSpec:
    """As ``finetune_pretrained``, with the backbone's SAM weights (SSLSAM's encoder is loaded over them; MedSAM
    and SupSAM hold every weight and do not read them)."""
    return _spec((dataset, strategy, mode, profile, processes), (params, params_override), processed, run,
                 ["--init", init, "--init-weights", init_weights.path, "--checkpoint", checkpoint.path])
