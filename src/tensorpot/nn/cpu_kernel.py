"""tensorpot's CPU kernel: one C++ extension, built on first use.

Two sources beside this module (declared in ``cpu_kernel.h``, bound in ``cpu_kernel.cpp``):

- ``convolution_kernel.cpp``: what :class:`tensorpot.nn.convolution._Convolution` computes with
  PyTorch operations, and its first derivatives, in one loop over the edges that forms every
  edge's messages in a buffer of ``C`` values instead of as ``[2G, Q, C]`` tensors, in parallel
  over nodes;
- ``matmul_kernel.cpp``: the products of the radial MLP (:func:`tensorpot.nn.radial.matmul`),
  a tall ``[M, K]`` by a small ``[K, N]`` with ``K, N <= 64``, on which a general BLAS runs
  below its speed.

The measured speed-ups are in docs/benchmarks/scaling.md (``benchmarks/breakdown.py``). The
extension is compiled once per machine with the C++ compiler PyTorch uses for extensions
(``torch.utils.cpp_extension``, cached under ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``), which takes one to two minutes. Where it cannot be built, tensorpot
warns once and uses the PyTorch operations; ``TENSORPOT_CPU_KERNEL=0`` turns it off. A
derivative of a backward pass itself (training on forces, Hessians) always runs the PyTorch
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

SOURCES = [
    Path(__file__).with_name(f)
    for f in ("cpu_kernel.cpp", "convolution_kernel.cpp", "matmul_kernel.cpp")
]
FLAGS = ["-O3", "-march=native"]


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


def _build(cpp_extension, name: str) -> ModuleType:
    """Compile with OpenMP, which ``at::parallel_for`` needs to run in parallel in an extension
    (its loop is an inline ``#pragma omp parallel``; the library is the one PyTorch loaded);
    where the compiler has no OpenMP, build a serial kernel."""
    try:
        return cpp_extension.load(
            name,
            [str(f) for f in SOURCES],
            extra_cflags=[*FLAGS, "-fopenmp"],
            extra_ldflags=["-fopenmp"],
        )
    except Exception as error:
        warnings.warn(
            f"tensorpot: the CPU kernel could not be built with OpenMP ({error}); "
            "building a serial one",
            RuntimeWarning,
            stacklevel=3,
        )
        return cpp_extension.load(
            f"{name}_serial", [str(f) for f in SOURCES], extra_cflags=[*FLAGS, "-fopenmp-simd"]
        )


@functools.lru_cache(maxsize=1)
def load() -> ModuleType | None:
    """The compiled kernel, or ``None`` (with one warning) where it cannot be built."""
    from torch.utils import cpp_extension

    name = f"tensorpot_cpu_kernel_{_machine()}"
    try:
        built = Path(cpp_extension._get_build_directory(name, False), f"{name}.so").is_file()
    except Exception:  # a private helper of torch: only decides whether to say so
        built = False
    if not built:  # a silent minute would look like a hang
        print("tensorpot: compiling the CPU kernel (once per machine, one to two minutes)",
              file=sys.stderr)  # fmt: skip
    try:
        return _build(cpp_extension, name)
    except Exception as error:  # no compiler, no ninja, a failed build: the operations remain
        warnings.warn(
            f"tensorpot: the CPU kernel could not be built ({error}); "
            "the convolution and the radial MLP run as PyTorch operations",
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
