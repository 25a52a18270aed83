"""The pieces of every benchmark: data, the peer models, interleaved timing, peak memory.

The peers, MACE (mace-torch) and FlashCart (flashcart), are optional (``pip install -c
constraints.txt -e ".[bench]"``). mace-torch pins e3nn 0.4.4, which imports under torch 2.13 only
after ``import mace``, so MACE is always imported through :func:`build_mace`. No global torch
state is changed: both peers are cast to float64 after they are built, and their batches are
cast explicitly (FlashCart builds its graphs in torch's default dtype).
"""

from __future__ import annotations

import importlib
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import ase.io
import numpy as np
import torch
from ase.data import chemical_symbols

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.errors import TensorPotError

REPO = Path(__file__).resolve().parents[3]  # the checkout, for the bundled data
FRAMES_3BPA = REPO / "data" / "3bpa" / "test_300K_first200.xyz"
ELEMENTS = [1, 6, 7, 8]


def load_frames(count: int, path: Path | None = None) -> list:
    """The first ``count`` frames of ``path`` (default: the bundled 3BPA test frames)."""
    path = FRAMES_3BPA if path is None else Path(path)
    if not path.is_file():
        raise TensorPotError(f"{path}: no such structure file (pass --data)")
    return ase.io.read(path, index=f":{count}")


def ictp_model(channels: int, max_L: int, correlation: int, max_ell: int = 3, **extra):
    config = {
        "model": "ictp", "r_max": 5.0, "num_channels": channels, "max_L": max_L,
        "max_ell": max_ell, "correlation": correlation, "product_basis": "full",
        "atomic_numbers": ELEMENTS, "avg_num_neighbors": 15.0, "dtype": "float64", **extra,
    }  # fmt: skip
    return tensorpot.build_model(config).eval()


def ictp_call(model, frames) -> Callable[[], torch.Tensor]:
    """Energy and forces of ``frames`` as one batch; the parameters are frozen, as for
    inference (both calculators do the same)."""
    model.requires_grad_(False)
    batch = collate([atoms_to_graph(a, model.r_max) for a in frames], dtype=model.dtype)

    def run():
        out = model(batch.to(dtype=model.dtype), compute_forces=True)
        return out.forces

    return run


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def mace_available() -> bool:
    return _importable("mace")


def build_mace(channels: int, max_L: int, correlation: int, max_ell: int = 3):
    """MACE (mace-torch ScaleShiftMACE) of the given size, float64, intermediate ranks capped."""
    import mace  # noqa: F401  (must come before e3nn)
    from e3nn import o3
    from mace.modules import RealAgnosticResidualInteractionBlock, ScaleShiftMACE

    hidden = "+".join(f"{channels}x{r}{'e' if r % 2 == 0 else 'o'}" for r in range(max_L + 1))
    model = ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=max_ell,
        interaction_cls=RealAgnosticResidualInteractionBlock,
        interaction_cls_first=RealAgnosticResidualInteractionBlock,
        num_interactions=2, num_elements=len(ELEMENTS), hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(ELEMENTS)),
        avg_num_neighbors=15.0, atomic_numbers=ELEMENTS, correlation=correlation,
        gate=torch.nn.functional.silu, atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )  # fmt: skip
    return model.to(torch.float64).eval()


def mace_call(model, frames) -> Callable[[], torch.Tensor]:
    """As :func:`ictp_call`, for MACE (its ``MACECalculator`` freezes the parameters too)."""
    model.requires_grad_(False)
    from mace import data as mace_data
    from mace.tools import AtomicNumberTable, torch_geometric

    table = AtomicNumberTable(ELEMENTS)
    data = [
        mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=table, cutoff=5.0)
        for a in frames
    ]
    batch = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(data))))
    batch = {
        k: (v.to(torch.float64) if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in batch.to_dict().items()
    }

    def run():
        return model(batch, compute_force=True)["forces"]

    return run


def flashcart_available() -> bool:
    return _importable("flashcart")


def build_flashcart(
    channels: int, max_L: int, correlation: int, max_ell: int = 3, atomic_numbers=None
):
    """FlashCart (``FlashCartPotential``) of the same size as :func:`ictp_model`, float64.

    Path-resolved products (``path_reduced_product=False``, as ICTP's full basis), no gates and
    no norms (its constructor's defaults), the radial MLP of MACE and ICTP (three hidden layers
    of 64) and a readout with 16 hidden units, 2 interactions, 8 radial functions.
    """
    from flashcart.model import FlashCartPotential

    numbers = ELEMENTS if atomic_numbers is None else atomic_numbers
    model = FlashCartPotential(
        elements=[chemical_symbols[z] for z in numbers], r_max=5.0, n_hidden_feats=channels,
        l_max_hidden_feats=max_L, l_max_edge_attrs=max_ell, n_radial=8, n_interactions=2,
        correlation=correlation, path_reduced_product=False, hidden_radial=[64, 64, 64],
        hidden_readout=[16], avg_neighbors=15.0, atomic_shifts=[0.0] * len(numbers),
        fit_atomic_shifts=False,
    )  # fmt: skip
    return model.to(torch.float64).eval()


def flashcart_batch(model, frames):
    """One batch of FlashCart's own graphs (its neighbour list) of ``frames``, floats cast to
    float64 (it builds them in torch's default dtype)."""
    from flashcart.data.data import AtomicConfig, AtomicData
    from flashcart.utils.torch_geometric.dataloader import DataLoader

    graphs = []
    for atoms in frames:
        config = AtomicConfig.from_ase(atoms)
        config.compute_neighbors(model.r_max)
        graphs.append(AtomicData.from_config(config, model.elements))
    batch = next(iter(DataLoader(graphs, batch_size=len(graphs))))
    for key in list(batch.keys):  # a property in flashcart 0.1.0
        value = batch[key]
        if torch.is_tensor(value) and value.is_floating_point():
            batch[key] = value.to(torch.float64)
    return batch


def flashcart_call(model, frames) -> Callable[[], torch.Tensor]:
    """As :func:`ictp_call`, for FlashCart: ``model.predict(batch, compute_forces=True)``."""
    model.requires_grad_(False)
    batch = flashcart_batch(model, frames)

    def run():
        return model.predict(batch, compute_forces=True)["forces"]

    return run


class Peer(NamedTuple):
    """A peer code: its label, its memory-child key, the package that provides it, and how to
    tell whether it is installed, build it and make its energy + forces call."""

    name: str
    key: str
    package: str
    available: Callable[[], bool]
    build: Callable
    call: Callable


#: every peer the benchmarks compare with, in the order of their tables
PEERS = [
    Peer("MACE", "mace", "mace-torch", mace_available, build_mace, mace_call),
    Peer("FlashCart", "flashcart", "flashcart", flashcart_available, build_flashcart,
         flashcart_call),
]  # fmt: skip


def time_interleaved(
    calls: dict[str, Callable], repeats: int, warmup: int = 2, min_seconds: float = 0.0
) -> dict:
    """Median seconds per call of each function, calls interleaved so machine drift cancels.

    At least ``repeats`` rounds, and more where the slowest call is cheap: enough rounds for
    that call to take ``min_seconds`` in all (its last warm-up call sets the count), so that
    the medians of cheap calls rest on as many samples as a noisy machine needs.
    """
    slowest = 0.0
    for fn in calls.values():
        for k in range(warmup):
            start = time.perf_counter()
            fn()
            if k == warmup - 1:  # the last warm-up call, the cache warm
                slowest = max(slowest, time.perf_counter() - start)
    if min_seconds > 0 and slowest > 0:
        repeats = max(repeats, math.ceil(min_seconds / slowest))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def peak_memory_mib(args: list[str]) -> float:
    """Peak extra resident memory (MiB) of one model's calls, measured in a fresh process.

    The child script (``memory_child.py``) builds the model and the batch, resets the kernel's
    peak-RSS mark, runs the calls, and prints the peak minus the resident memory before them.
    """
    out = subprocess.run(
        [sys.executable, "-m", "tensorpot.benchmarking.memory_child", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); return the current RSS (MiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (MiB)."""
    return _status_mib("VmHWM")
