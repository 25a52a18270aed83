"""tensorpot's CPU kernel: a library of PyTorch operators, ``torch.ops.tensorpot.*``, built on
first use.

Three sources beside this module (declared in ``cpu_kernel.h``; the operators' schemas and CPU
implementations are registered in ``cpu_kernel.cpp`` with ``TORCH_LIBRARY``):

- ``convolution_kernel.cpp``: ``convolution`` and ``convolution_backward``, what
  :class:`tensorpot.nn.convolution._Convolution` computes with PyTorch operations, and its
  first derivatives, in one loop over the edges that forms every edge's messages in a buffer
  of ``C`` values instead of as ``[2G, Q, C]`` tensors, in parallel over nodes;
- ``matmul_kernel.cpp``: ``matmul``, the products of the radial MLP
  (:func:`tensorpot.nn.radial.matmul`), a tall ``[M, K]`` by a small ``[K, N]`` with
  ``K, N <= 64``, on which a general BLAS runs below its speed;
- ``group_cg_kernel.cpp``: ``group_cg_weights``, ``group_cg`` and ``group_cg_backward``,
  FreeCG's group CG (:class:`tensorpot.nn.visnet.GroupCG`) for 8 abstract edges per group,
  whose many small contractions PyTorch runs as batched products of a few rows each.

:func:`load` builds the library (a plain shared library, no Python module), loads it with
``torch.ops.load_library`` and registers, from :mod:`tensorpot.nn.operators`, the operators'
fake implementations and autograd formulas: the backward operators' own derivatives are the
operators again, so forces, training on forces and Hessians all run through them, and
``make_fx``, ``torch.export`` and ``torch.compile`` trace through them. A process without
tensorpot runs a program that calls them after ``torch.ops.load_library(path)`` of the same
file (docs/export.md).

The backend is chosen once, when a model is built (:func:`choose`, called by
:func:`tensorpot.build_model`): the modules that can run the kernel get an attribute
``cpu_kernel``, true where the library builds and ``TENSORPOT_CPU_KERNEL`` is not ``0``; the
forward pass reads it and runs the operators on CPU tensors of float32 or float64
(:func:`applies`: the tensors' device and dtype, known while tracing too), the PyTorch
operations otherwise. Where the library cannot be built, tensorpot warns once and chooses the
PyTorch operations. The measured speed-ups are in docs/benchmarks/scaling.md
(``benchmarks/breakdown.py``). The library is compiled with the C++ compiler PyTorch uses for
extensions (``torch.utils.cpp_extension``), which takes one to two minutes.

It is compiled at run time, on first use, rather than when the package is installed: it is
built with ``-march=native`` for the CPU it runs on (a wheel built on another machine could
stop with an illegal instruction); an isolated build environment does not see pip's
``-c constraints.txt`` and would fetch another PyTorch (a CUDA build of several GB) to compile
against; and a build that fails at run time leaves the PyTorch operations, where a failed
install would leave nothing.

The cache is one build directory per extension name under torch's extensions root
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions/<python>_<accelerator>``), and
the name holds a hash of the CPU, the environment (``sys.prefix``, Python, torch's version),
the sources' contents and the flags. So two environments never rebuild each other's kernel
(torch would rebuild one build directory in place whenever the sources' paths or the flags
differ), and the path of the built library is known: "compiling the CPU kernel" is printed on
stderr exactly when a compile will happen. Each edit of the sources makes a new directory; the
old ones can be deleted.

torch guards a build with a ``lock`` file in the build directory, created exclusively and
removed at the end; other processes wait while it exists, so a process killed while compiling
would make every later one wait forever. tensorpot therefore holds an ``flock`` on
``<name>.lock`` beside the build directory for the whole build (:func:`build_locked`). The
operating system releases it when its process ends, however it ends, so it cannot go stale;
and as every tensorpot process builds only while holding it, a torch ``lock`` found while
holding it was left by an interrupted build and is removed. A process that waits longer than
:data:`LOCK_TIMEOUT` for another one's build says so and uses the PyTorch operations. Where
there is no ``fcntl`` (Windows) only torch's own lock guards the build.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

SOURCES = [
    Path(__file__).with_name(f)
    for f in (
        "cpu_kernel.cpp",
        "convolution_kernel.cpp",
        "matmul_kernel.cpp",
        "group_cg_kernel.cpp",
    )
]
HEADERS = [Path(__file__).with_name("cpu_kernel.h")]
FLAGS = ["-O3", "-march=native"]

#: seconds to wait for another process's build of the kernel before running without it; a
#: build takes one to two minutes, so this is long only where the machine is very busy
LOCK_TIMEOUT = 15 * 60.0

LIBRARY_SUFFIX = (
    ".pyd" if sys.platform == "win32" else ".so"
)  # as torch.utils.cpp_extension names it

T = TypeVar("T")


class LockTimeout(RuntimeError):
    """Another process held the build lock for longer than the timeout."""


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


def _options(serial: bool = False) -> dict:
    """The compiler's flags: with OpenMP, or for the serial kernel (see :func:`_build`)."""
    if serial:
        return {"extra_cflags": [*FLAGS, "-fopenmp-simd"]}
    return {"extra_cflags": [*FLAGS, "-fopenmp"], "extra_ldflags": ["-fopenmp"]}


def _name() -> str:
    """The extension's name: one for each CPU, environment, place and content of the sources,
    and flags, so that no two of them share (and rebuild) one build directory. The sources'
    folder counts because torch's build rules name the source files: two checkouts of the
    same code in one environment would otherwise rebuild each other's library in turn."""
    digest = hashlib.sha1()
    folders = sorted({str(f.resolve().parent) for f in SOURCES})
    for part in (_machine(), sys.prefix, sys.version, torch.__version__, *folders,
                 repr(_options()), repr(_options(serial=True))):  # fmt: skip
        digest.update(part.encode() + b"\0")
    for source in (*SOURCES, *HEADERS):
        digest.update(source.read_bytes())
    return f"tensorpot_cpu_kernel_{digest.hexdigest()[:12]}"


def _directory(name: str) -> Path:
    """The build directory of extension ``name`` under torch's extensions root (created)."""
    from torch.utils import cpp_extension

    try:
        return Path(cpp_extension._get_build_directory(name, False))
    except AttributeError:  # a private helper of torch; the public root without its subfolder
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
        directory = Path(root, name)
        directory.mkdir(parents=True, exist_ok=True)
        return directory


def _acquire(file, path: Path, timeout: float) -> bool:
    """Take the ``flock`` of ``file``, waiting at most ``timeout`` seconds for another holder.
    ``False`` where the file system has no such locks (then torch's own lock is all there is)."""
    waiting = False
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # e.g. ENOLCK on some network file systems
            return False
        if not waiting:
            print(f"tensorpot: waiting for another process compiling the CPU kernel (lock {path})",
                  file=sys.stderr)  # fmt: skip
            waiting = True
        left = deadline - time.monotonic()
        if left <= 0:
            raise LockTimeout(
                f"tensorpot: another process has been compiling the CPU kernel for over "
                f"{timeout:g} s (it holds the lock {path}); the convolution and the radial MLP "
                "run as PyTorch operations in this process"
            )
        time.sleep(min(0.2, left))


def build_locked(directory: Path, build: Callable[[], T], timeout: float | None = None) -> T:
    """Run ``build``, which compiles the extension named ``directory.name`` into ``directory``,
    while holding an ``flock`` on ``<directory>.lock``.

    While it is held, a torch ``lock`` file in ``directory`` was left by an interrupted build
    (every build runs under this lock) and is removed. Prints on stderr that it waits when
    another process holds the lock, and that it compiles when the library is not there yet.
    Raises :class:`LockTimeout` after ``timeout`` seconds (default :data:`LOCK_TIMEOUT`) of
    waiting, without building.
    """
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        _announce(directory)
        return build()
    path = directory.with_name(f"{directory.name}.lock")
    with open(path, "a") as file:  # closing it releases the lock
        if _acquire(file, path, timeout):
            stale = directory / "lock"
            if stale.exists():
                stale.unlink(missing_ok=True)
                print(f"tensorpot: removed {stale}, left by an interrupted build of the CPU "
                      "kernel", file=sys.stderr)  # fmt: skip
        _announce(directory)
        return build()


def _announce(directory: Path) -> None:
    """Say that a compile will happen (a silent minute would look like a hang)."""
    if not (directory / f"{directory.name}{LIBRARY_SUFFIX}").is_file():
        print(f"tensorpot: compiling the CPU kernel in {directory} (once per machine and "
              "environment, one to two minutes)", file=sys.stderr)  # fmt: skip


def _build(cpp_extension, name: str, timeout: float) -> Path:
    """Compile with OpenMP, which ``at::parallel_for`` needs to run in parallel in an extension
    (its loop is an inline ``#pragma omp parallel``; the library is the one PyTorch loaded);
    where the compiler has no OpenMP, build a serial kernel. Returns the library's path; it
    is loaded (``torch.ops.load_library``), which registers the operators."""

    def build_one(name: str, serial: bool) -> Path:
        directory = _directory(name)
        sources = [str(f) for f in SOURCES]
        options = _options(serial)
        return Path(
            build_locked(
                directory,
                lambda: cpp_extension.load(
                    name,
                    sources,
                    build_directory=str(directory),
                    is_python_module=False,
                    **options,
                ),
                timeout,
            )
        )

    try:
        return build_one(name, serial=False)
    except LockTimeout:
        raise
    except Exception as error:
        warnings.warn(
            f"tensorpot: the CPU kernel could not be built with OpenMP ({error}); "
            "building a serial one",
            RuntimeWarning,
            stacklevel=3,
        )
        return build_one(f"{name}_serial", serial=True)


@functools.lru_cache(maxsize=1)
def load() -> Path | None:
    """The path of the operator library, built where needed and loaded into this process with
    its fake implementations and autograd formulas (:func:`tensorpot.nn.operators.register`);
    or ``None`` (with one warning) where it cannot be built, or where another process's build
    of it took longer than :data:`LOCK_TIMEOUT`."""
    from torch.utils import cpp_extension

    from tensorpot.nn import operators

    try:
        path = _build(cpp_extension, _name(), LOCK_TIMEOUT)
    except LockTimeout as error:
        warnings.warn(str(error), RuntimeWarning, stacklevel=2)
        return None
    except Exception as error:  # no compiler, no ninja, a failed build: the operations remain
        warnings.warn(
            f"tensorpot: the CPU kernel could not be built ({error}); "
            "the convolution and the radial MLP run as PyTorch operations",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    operators.register()
    return path


def available() -> bool:
    """Whether the kernel may be used (:func:`enabled`) and its library loads (:func:`load`)."""
    return enabled() and load() is not None


def applies(kernel: bool, *tensors: torch.Tensor) -> bool:
    """Whether a module told to use the kernel (``kernel``) runs it on these tensors: on the
    CPU, in float32 or float64 (their device and dtype are known while tracing too)."""
    first = tensors[0]
    return (
        kernel
        and first.dtype in (torch.float32, torch.float64)
        and all(t.device.type == "cpu" and t.dtype == first.dtype for t in tensors)
    )


def choose(model: torch.nn.Module, kernel: bool | None = None) -> bool:
    """Tell every module of ``model`` that can run the kernel (an attribute ``cpu_kernel``)
    whether to: ``kernel`` if given (``True`` where the library does not load is an error),
    else where :func:`available`. Modules without such an attribute are left as they are, and
    a model without any loads nothing. Returns the choice."""
    users = [m for m in model.modules() if hasattr(m, "cpu_kernel")]
    if not users:
        return False
    if kernel is None:
        kernel = available()
    elif kernel and load() is None:
        raise RuntimeError("tensorpot: the CPU kernel's operator library could not be built")
    for module in users:
        module.cpu_kernel = bool(kernel)
    return bool(kernel)
