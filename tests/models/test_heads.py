"""Output heads on ICTP: symmetry of dipoles and polarizabilities, and gradients reaching the
representation, over ranks and product bases (float64)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.errors import ConfigError
from tests.conftest import random_rotation
from tests.models.contract import molecule
from tests.models.test_ictp import TINY as ICTP_TINY

TINY = {**ICTP_TINY, "model": "ictp", "head_hidden": 4}
OUTPUTS = ["energy", "dipole", "polarizability", {"property": "gap", "reduction": "mean"}]
GRID = [(2, 2, b) for b in ("full", "sym", "sym+lt")] + [(3, 3, "sym"), (2, 1, "sym")]


def build(max_L: int, correlation: int, basis: str, outputs=OUTPUTS, **extra):
    return tensorpot.build_model(
        {
            **TINY,
            "max_L": max_L,
            "correlation": correlation,
            "product_basis": basis,
            "outputs": outputs,
            "seed": 7,
            **extra,
        }
    )


def predict(model, structures):
    batch = collate([atoms_to_graph(a, model.r_max) for a in structures])
    return model(batch, compute_forces=True)


@pytest.mark.parametrize(("max_L", "correlation", "basis"), GRID)
def test_rotation_and_reflection(max_L, correlation, basis):
    """mu -> R mu (a polar vector: -mu under inversion), alpha -> R alpha R^T, scalars fixed."""
    model, atoms = build(max_L, correlation, basis), molecule(1)
    out = predict(model, [atoms])
    assert out.polarizability.shape == (1, 3, 3) and out.dipole.shape == (1, 3)
    alpha = out.polarizability[0].detach()
    assert torch.allclose(alpha, alpha.T, atol=1e-12)
    for k, sign in enumerate([1.0, -1.0]):
        rot = sign * random_rotation(k)
        moved = atoms.copy()
        moved.positions = atoms.positions @ rot.numpy().T
        out2 = predict(model, [moved])
        torch.testing.assert_close(
            out2.dipole[0].detach(), rot @ out.dipole[0].detach(), atol=1e-10, rtol=1e-10
        )
        torch.testing.assert_close(
            out2.polarizability[0].detach(), rot @ alpha @ rot.T, atol=1e-10, rtol=1e-10
        )
        torch.testing.assert_close(out2.properties["gap"], out.properties["gap"])
        torch.testing.assert_close(out2.energy, out.energy, atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize(("max_L", "correlation", "basis"), GRID[:2])
def test_permutation_and_translation(max_L, correlation, basis):
    model, atoms = build(max_L, correlation, basis), molecule(2)
    out = predict(model, [atoms])
    perm = np.random.default_rng(0).permutation(len(atoms))
    moved = atoms[perm]
    moved.positions += np.array([3.0, -1.0, 0.5])  # a neutral molecule: no origin dependence
    out2 = predict(model, [moved])
    for name in ("dipole", "polarizability"):
        torch.testing.assert_close(getattr(out2, name), getattr(out, name), atol=1e-10, rtol=1e-10)


def test_gradients_of_every_head_reach_the_representation():
    model = build(2, 2, "sym")
    model.train()
    out = predict(model, [molecule(4), molecule(5, n=4)])
    for name, value in [
        ("dipole", out.dipole),
        ("polarizability", out.polarizability),
        ("gap", out.properties["gap"]),
        ("energy", out.energy),
    ]:
        model.zero_grad()
        value.square().sum().backward(retain_graph=True)
        reached = [
            n
            for n, p in model.named_parameters()
            if n.startswith("layers.0.") and p.grad is not None and p.grad.abs().sum() > 0
        ]
        assert reached, f"{name}: no gradient in the first layer"


def test_energy_only_model_has_no_heads_and_its_parameters_are_unchanged():
    energy_only = build(2, 2, "sym", outputs=["energy"])
    assert len(energy_only.heads) == 0
    with_heads = build(2, 2, "sym")
    shared = {n: p for n, p in energy_only.named_parameters() if not n.startswith("layers.1.")}
    for name, param in shared.items():  # the last layer differs in rank; the rest is the same
        assert torch.equal(param, dict(with_heads.named_parameters())[name]), name


@pytest.mark.parametrize(("outputs", "max_L"), [(["dipole"], 0), (["polarizability"], 1)])
def test_max_L_below_what_an_output_reads_is_a_config_error(outputs, max_L):
    with pytest.raises(ConfigError, match=f"max_L must be >= {max_L + 1}"):
        build(max_L, 2, "sym", outputs=outputs)


def test_a_model_without_energy_has_no_forces():
    model = build(2, 2, "sym", outputs=["dipole", "polarizability"])
    out = predict(model, [molecule(6)])
    assert out.energy is None and out.forces is None and out.dipole is not None
    assert not any("readout" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("basis", ["full", "sym"])
def test_grid_of_ranks(basis):
    for max_L, correlation in itertools.product((1, 2, 3), (1, 2)):
        outputs = ["dipole"] + (["polarizability"] if max_L >= 2 else [])
        out = predict(build(max_L, correlation, basis, outputs=outputs), [molecule(8)])
        assert torch.isfinite(out.dipole).all()
