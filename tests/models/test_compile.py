"""``torch.compile`` traces through the CPU kernel's operators (:mod:`tensorpot.nn.operators`):
a tiny model's energy compiled (``aot_eager``: Dynamo and AOTAutograd, which run the fake
implementations and autograd formulas, without a C++ compile of the graph) gives the values and
forces of the uncompiled one.

The model's own forward pass with ``compute_forces=True`` does not compile correctly, with or
without the kernel: it calls ``torch.autograd.grad`` inside, where Dynamo breaks the graph, and
the forces come back wrong. Compiling the energy and differentiating outside, as here, is the
form that works."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.nn import cpu_kernel
from tests.models.contract import crystal

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None,
    reason="no C++ compiler and ninja to build the CPU kernel",
)

CONFIGS = {
    "ictp": {"model": "ictp", "num_channels": 4, "max_L": 2, "correlation": 2,
             "radial_MLP": [8], "r_max": 3.0, "atomic_numbers": [1, 6, 8]},
    "freecg": {"model": "freecg", "r_max": 3.0, "num_channels": 8, "num_interactions": 2,
               "num_heads": 2, "num_radial_basis": 6, "num_groups": 1,
               "atomic_numbers": [1, 6, 8]},
}  # fmt: skip


def operators_in(graphs) -> set[str]:
    return {
        str(node.target).removesuffix(".default")
        for graph in graphs
        for node in graph.graph.nodes
        if node.op == "call_function" and str(node.target).startswith("tensorpot.")
    }


@pytest.mark.parametrize("family", list(CONFIGS))
def test_compiled_model_runs_the_operators_and_gives_the_values(family):
    """The energy as a function of the positions compiles as one graph (``fullgraph=True``)
    holding the operators, and its derivative (the forces, by the operators' autograd
    formulas in the compiled backward graph) equals the uncompiled model's."""
    assert cpu_kernel.available()
    model = tensorpot.build_model(CONFIGS[family]).eval().requires_grad_(False)
    atoms = crystal(seed=3).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=1)
    batch = collate([atoms_to_graph(atoms, model.r_max)])
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    def energy(positions):
        return model(batch._replace(positions=positions), compute_forces=False).energy.sum()

    compiled = torch.compile(energy, fullgraph=True, backend=backend)
    results = []
    for run in (compiled, energy):
        positions = batch.positions.clone().requires_grad_(True)
        value = run(positions)
        (grad,) = torch.autograd.grad(value, positions)
        results.append((value.detach(), grad))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    wanted = {"ictp": {"tensorpot.convolution", "tensorpot.matmul"},
              "freecg": {"tensorpot.group_cg"}}[family]  # fmt: skip
    assert len(graphs) == 1 and wanted <= operators_in(graphs)
    torch._dynamo.reset()
