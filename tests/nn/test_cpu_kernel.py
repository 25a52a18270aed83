"""The CPU kernel's build cache: one build directory per environment and content, and a lock
that a killed build cannot leave behind (:mod:`tensorpot.nn.cpu_kernel`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tensorpot.nn import cpu_kernel

fcntl = pytest.importorskip("fcntl", reason="the build lock is an flock")

COMPILER = shutil.which("c++") is not None and shutil.which("ninja") is not None

#: seconds after which a child that should return at once counts as hanging
HANG = 120


def _library(directory):
    return directory / f"{directory.name}.so"


def test_stale_torch_lock_is_removed_before_the_build(tmp_path, capsys):
    directory = tmp_path / "tensorpot_cpu_kernel_test"
    directory.mkdir()
    (directory / "lock").touch()  # what torch leaves when its process is killed while building
    seen = []

    def build():
        seen.append((directory / "lock").exists())
        return "built"

    assert cpu_kernel.build_locked(directory, build, timeout=5) == "built"
    assert seen == [False]
    err = capsys.readouterr().err
    assert f"removed {directory / 'lock'}" in err and "interrupted build" in err


def test_compile_message_exactly_when_the_library_is_missing(tmp_path, capsys):
    directory = tmp_path / "tensorpot_cpu_kernel_test"
    cpu_kernel.build_locked(directory, lambda: None, timeout=5)
    assert "compiling the CPU kernel" in capsys.readouterr().err
    _library(directory).touch()
    cpu_kernel.build_locked(directory, lambda: None, timeout=5)
    assert "compiling" not in capsys.readouterr().err
    (directory.parent / f"{directory.name}_v1.so").touch()  # another version's is not this one
    _library(directory).unlink()
    cpu_kernel.build_locked(directory, lambda: None, timeout=5)
    assert "compiling the CPU kernel" in capsys.readouterr().err


def test_name_differs_per_environment_torch_sources_their_place_and_flags(tmp_path, monkeypatch):
    name = cpu_kernel._name()
    assert name.isidentifier() and name == cpu_kernel._name()
    with monkeypatch.context() as m:
        m.setattr(cpu_kernel.sys, "prefix", str(tmp_path / "other-venv"))
        assert cpu_kernel._name() != name
    with monkeypatch.context() as m:
        m.setattr(cpu_kernel.torch, "__version__", "0.0.0")
        assert cpu_kernel._name() != name
    with monkeypatch.context() as m:
        m.setattr(cpu_kernel, "FLAGS", [*cpu_kernel.FLAGS, "-DOTHER"])
        assert cpu_kernel._name() != name
    edited = tmp_path / cpu_kernel.SOURCES[0].name
    edited.write_bytes(cpu_kernel.SOURCES[0].read_bytes() + b"\n")
    with monkeypatch.context() as m:
        m.setattr(cpu_kernel, "SOURCES", [edited, *cpu_kernel.SOURCES[1:]])
        assert cpu_kernel._name() != name
    moved = [Path(shutil.copy(f, tmp_path / f.name)) for f in cpu_kernel.SOURCES]
    with monkeypatch.context() as m:  # the same content in another checkout: its own build
        m.setattr(cpu_kernel, "SOURCES", moved)
        assert cpu_kernel._name() != name


#: load the kernel with a short wait for the lock; print whether it came back and the warnings
WAIT_SCRIPT = """
import warnings
from tensorpot.nn import cpu_kernel
cpu_kernel.LOCK_TIMEOUT = 0.5
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kernel = cpu_kernel.load()
print("kernel" if kernel is not None else "fallback")
for w in caught:
    print(w.message)
"""


def test_lock_held_by_another_process_times_out_into_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("TENSORPOT_CPU_KERNEL", "1")
    directory = cpu_kernel._directory(cpu_kernel._name())
    lock = directory.with_name(f"{directory.name}.lock")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process compiling
        done = subprocess.run(
            [sys.executable, "-c", WAIT_SCRIPT], capture_output=True, text=True, timeout=HANG
        )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "fallback"
    assert any("another process" in line and str(lock) in line for line in out[1:])
    assert f"waiting for another process compiling the CPU kernel (lock {lock})" in done.stderr
    assert "compiling the CPU kernel in" not in done.stderr
    assert list(directory.iterdir()) == []  # nothing was built


@pytest.mark.skipif(not COMPILER, reason="no C++ compiler and ninja to build the CPU kernel")
def test_real_kernel_loads_past_a_stale_torch_lock(monkeypatch):
    """The reported case: a build killed midway left torch's lock file in the cache."""
    monkeypatch.setenv("TENSORPOT_CPU_KERNEL", "1")
    assert cpu_kernel.load() is not None  # built (or found) in the user's cache
    directory = cpu_kernel._directory(cpu_kernel._name())
    assert _library(directory).is_file()
    stale = directory / "lock"
    stale.touch()
    try:
        done = subprocess.run(
            [sys.executable, "-c", WAIT_SCRIPT.replace("0.5", "60")],
            capture_output=True,
            text=True,
            timeout=HANG,
        )
    finally:
        stale.unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "kernel"
    assert "interrupted build" in done.stderr
    assert "compiling the CPU kernel" not in done.stderr


def test_a_traced_graph_records_the_operators():
    """The kernel is a set of PyTorch operators with fake implementations: a graph traced on
    symbolic sizes (as ``tensorpot export`` traces) records them, its backward pass too."""
    from torch.fx.experimental.proxy_tensor import make_fx

    if not cpu_kernel.available():
        pytest.skip("the CPU kernel is not available here")

    def forces(x, w):
        x = x.detach().requires_grad_(True)
        y = torch.ops.tensorpot.matmul(torch.sin(x), w)
        return torch.autograd.grad(y.square().sum(), x)[0]

    x, w = torch.randn(10, 4, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    graph = make_fx(forces, tracing_mode="symbolic")(x, w)
    calls = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
    assert calls.count("tensorpot.matmul.default") == 2  # forward and backward
    torch.testing.assert_close(graph(2 * x, w), forces(2 * x, w))
