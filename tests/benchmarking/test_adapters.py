"""The package's adapters: every code that is installed gives energies, forces and stress of
the right shapes and dtype for every task, on tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from ase.build import bulk

from tensorpot.benchmarking.adapters import FlashCart, Mace, Size, TensorPot, ictp_config
from tensorpot.benchmarking.harness import TASKS, Workload, load_frames

FRAMES = load_frames(Path(__file__).parents[2] / "data" / "3bpa" / "test_300K_first200.xyz", 2)
TINY = Size(channels=2, max_L=1, max_ell=1, correlation=1)
TINY_FREECG = {"model": "freecg", "num_channels": 8, "num_groups": 2, "num_edges_eachgroup": 4,
               "num_interactions": 1, "num_heads": 2, "num_radial_basis": 4}  # fmt: skip
TINY_VISNET = {"model": "visnet", "num_channels": 8, "num_interactions": 1, "num_heads": 2,
               "num_radial_basis": 4}  # fmt: skip


def installed(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"no {module}")


ADAPTERS = [
    pytest.param(TensorPot(ictp_config(TINY)), id="ictp"),
    pytest.param(TensorPot(TINY_FREECG), id="freecg"),
    pytest.param(TensorPot(TINY_VISNET), id="visnet"),
    pytest.param(Mace(TINY), id="mace", marks=installed("mace")),
    pytest.param(FlashCart(TINY), id="flashcart", marks=installed("flashcart")),
]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(("task", "dtype"), [("forces", "float64"), ("energy", "float32"),
                                             ("train", "float64")])  # fmt: skip
def test_shapes_of_a_molecule_batch(adapter, task, dtype):
    workload = Workload("3bpa", FRAMES, dtype, task)
    out = adapter.prepare(workload)()
    assert out.energy.shape == (2,)
    assert torch.isfinite(out.energy).all()
    if task == "energy":
        assert out.forces is None
    else:
        assert out.forces.shape == (54, 3) and out.forces.dtype == workload.torch_dtype


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_stress_of_a_periodic_cell(adapter):
    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    cell.rattle(0.02, seed=0)
    out = adapter.prepare(Workload("fcc", [cell], task="stress"))()
    assert out.forces.shape == (4, 3) and out.stress.numel() in (6, 9)  # Voigt or 3 x 3


def test_every_adapter_runs_every_task():
    for adapter in (TensorPot(TINY_VISNET), Mace(TINY), FlashCart(TINY)):
        assert adapter.tasks == tuple(TASKS)
    assert TensorPot(TINY_FREECG).name == "tensorpot freecg"
