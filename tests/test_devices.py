"""Device names are checked before any work: one clear error for a device this machine lacks."""

from __future__ import annotations

import pytest
import torch

from tensorpot.devices import resolve_device
from tensorpot.errors import ConfigError


def test_cpu_is_always_there():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda(name):
    with pytest.raises(ConfigError, match=f"device '{name}': CUDA is not available"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "cpu:x", ""])
def test_not_a_device(name):
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device(name)


def test_a_device_tensorpot_does_not_run_on():
    with pytest.raises(ConfigError, match="tensorpot runs on"):
        resolve_device("meta")
