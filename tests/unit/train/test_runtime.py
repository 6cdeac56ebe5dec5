"""Device and precision selection without assuming CUDA."""

from __future__ import annotations

import pytest
import torch

from medseg.errors import MedsegError
from medseg.train.runtime import Runtime, resolve_device, start_runtime


def test_auto_picks_an_available_device() -> None:
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_unavailable_or_unknown_devices_are_named() -> None:
    with pytest.raises(MedsegError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(MedsegError, match="not a device name"):
        resolve_device("gpu0")


def test_precision_is_checked_and_bf16_autocasts() -> None:
    with pytest.raises(MedsegError, match="fp16"), start_runtime("cpu", "fp16"):
        pass
    with start_runtime("cpu", "bf16") as runtime:
        assert runtime == Runtime(torch.device("cpu"), "bf16") and runtime.is_main and not runtime.distributed
        with runtime.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with Runtime(torch.device("cpu")).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
