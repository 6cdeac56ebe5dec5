"""Where and how a training process runs: device, precision and its place in a ``torchrun`` group.

One process per device. Under ``torchrun`` (``WORLD_SIZE`` > 1) the processes join a process group:
NCCL on CUDA, gloo otherwise; each CUDA process takes the GPU of its ``LOCAL_RANK``. Only rank 0
writes logs and checkpoints. No device is assumed: ``auto`` picks CUDA, then MPS, then the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from medseg.errors import MedsegError

PRECISIONS = ("fp32", "bf16")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(setting: str, local_rank: int = 0, key: str = "finetune.device") -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as an available device (``key``: the setting's name in
    errors)."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    try:
        device = torch.device(setting)
    except RuntimeError as exc:
        raise MedsegError(f"{key} '{setting}' is not a device name (auto, cpu, cuda, cuda:N, mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MedsegError(f"{key} is '{setting}' but CUDA is not available here")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise MedsegError(f"CUDA device {index} requested, {torch.cuda.device_count()} present")
        return torch.device("cuda", index)
    if device.type == "mps" and not _mps_available():
        raise MedsegError(f"{key} is 'mps' but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise MedsegError(f"{key} '{setting}' is not supported (auto, cpu, cuda, cuda:N, mps)")
    return device


@dataclass(frozen=True)
class Runtime:
    """This process: its device, numeric precision, rank and the number of processes."""

    device: torch.device
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """bf16 autocast when asked for (weights and optimiser stay fp32), otherwise nothing."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``values`` across processes (``values`` itself when alone)."""
        if not self.distributed:
            return values
        total = values.to(self.device if self.device.type == "cuda" else "cpu").clone()
        torch.distributed.all_reduce(total)
        return total.cpu()

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train: DDP around ``model`` in a group, ``model`` itself otherwise. Unused
        parameters are allowed (SAM's IoU head gets no gradient from the segmentation loss)."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


@contextlib.contextmanager
def start_runtime(device_setting: str, precision: str) -> Iterator[Runtime]:
    """This process's runtime; joins (and finally leaves) the ``torchrun`` process group if any."""
    if precision not in PRECISIONS:
        raise MedsegError(f"finetune.precision '{precision}' is not one of {list(PRECISIONS)}")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting, local_rank)
    if world_size == 1:
        yield Runtime(device, precision)
        return
    if device.type == "mps":
        raise MedsegError("distributed training is not supported on MPS; use one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        yield Runtime(device, precision, rank, world_size)
    finally:
        torch.distributed.destroy_process_group()
