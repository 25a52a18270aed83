"""The CPU kernel of the convolution (``convolution_kernel.cpp``), built on first use.

The kernel computes what :class:`tensorpot.nn.convolution._Convolution` computes with PyTorch
operations, and its first derivatives, in one loop over the edges that forms every edge's
messages in a buffer of ``C`` values instead of as ``[2G, Q, C]`` tensors: on 3BPA batches of
ten (2 threads, float64) the convolution of both layers, forward and backward, ran 1.6-2.2x
faster than the operations (``benchmarks/breakdown.py``, docs/benchmarks/scaling.md). It is
compiled once per machine with the C++ compiler PyTorch uses for extensions
(``torch.utils.cpp_extension``, cached under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``), which takes about a minute. Where it cannot be built,
tensorpot warns once and uses the PyTorch operations; ``TENSORPOT_CPU_KERNEL=0`` turns it off.
A derivative of the backward pass itself (training on forces) always runs the PyTorch
operations, which are differentiable.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch

SOURCE = Path(__file__).with_name("convolution_kernel.cpp")


def enabled() -> bool:
    """Whether the kernel may be used (``TENSORPOT_CPU_KERNEL`` is not ``0``)."""
    return os.environ.get("TENSORPOT_CPU_KERNEL", "1") != "0"


def _machine() -> str:
    """A fingerprint of the CPU: the kernel is compiled for it (``-march=native``)."""
    flags = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
    except OSError:
        pass
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=1)
def load() -> ModuleType | None:
    """The compiled kernel, or ``None`` (with one warning) where it cannot be built."""
    from torch.utils import cpp_extension

    name = f"tensorpot_convolution_{_machine()}"
    try:
        built = Path(cpp_extension._get_build_directory(name, False), f"{name}.so").is_file()
    except Exception:  # a private helper of torch: only decides whether to say so
        built = False
    if not built:  # a silent minute would look like a hang
        print("tensorpot: compiling the CPU convolution kernel (once per machine, about a "
              "minute)", file=sys.stderr)  # fmt: skip
    try:
        return cpp_extension.load(
            name, [str(SOURCE)], extra_cflags=["-O3", "-march=native", "-fopenmp-simd"]
        )
    except Exception as error:  # no compiler, no ninja, a failed build: the operations remain
        warnings.warn(
            f"tensorpot: the CPU convolution kernel could not be built ({error}); "
            "the convolution runs as PyTorch operations",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def usable(*tensors: torch.Tensor) -> ModuleType | None:
    """The kernel if it is enabled and builds, and the tensors are on the CPU, all in float32
    or all in float64."""
    if not enabled() or tensors[0].dtype not in (torch.float32, torch.float64):
        return None
    if any(t.device.type != "cpu" or t.dtype != tensors[0].dtype for t in tensors):
        return None
    return load()
