"""ICTP through the shared model contract, over the grid of ranks, correlations and bases."""

from __future__ import annotations

import itertools

import pytest
import torch

import tensorpot
from tensorpot.errors import ConfigError
from tests.conftest import random_rotation, rank_matrix
from tests.models.contract import ModelContract, crystal, molecule

BASES = ["full", "sym", "sym+lt"]
TINY = {
    "model": "ictp",
    "r_max": 3.0,
    "num_channels": 3,
    "num_product_channels": 2,
    "radial_MLP": [8],
    "num_radial_basis": 4,
    "atomic_numbers": [1, 6, 7, 8],
    "avg_num_neighbors": 4.0,
}


class TestICTP(ModelContract):
    """The whole contract on a mid-size ICTP (max_L 2, correlation 3, symmetric basis)."""

    config = {**TINY, "max_L": 2, "correlation": 3, "product_basis": "sym"}


class TestICTPCoupled(ModelContract):
    config = {**TINY, "max_L": 1, "correlation": 2, "product_basis": "sym+lt",
              "path_weights": "coupled", "num_interactions": 3}  # fmt: skip


GRID = list(itertools.product(range(5), range(1, 5), BASES))


@pytest.mark.parametrize(("max_L", "correlation", "basis"), GRID)
class TestICTPGrid:
    """M1-M4 and M6 for every max_L 0-4, correlation 1-4 and product basis (float64)."""

    def contract(self, max_L, correlation, basis) -> ModelContract:
        c = ModelContract()
        c.config = {
            **TINY, "max_L": max_L, "max_ell": max_L, "correlation": correlation,
            "product_basis": basis, "num_channels": 2, "num_product_channels": 2,
        }  # fmt: skip
        return c

    def test_symmetry(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_symmetry()

    def test_forces_finite_differences(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_forces_finite_differences()

    def test_stress_finite_differences(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_stress_finite_differences()

    def test_extensive_and_local(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_extensive_and_local()

    def test_smooth_at_cutoff(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_smooth_at_cutoff()

    def test_e0_and_shift(self, max_L, correlation, basis):
        self.contract(max_L, correlation, basis).test_e0_and_shift()


def test_structures_are_valid():
    assert len(molecule(0)) == 6 and crystal(0).pbc.all()


@pytest.mark.slow
@pytest.mark.parametrize(("max_L", "correlation"), [(5, 2), (6, 1), (6, 2), (2, 6), (3, 5)])
def test_high_rank_and_correlation(max_L, correlation):
    """The grid's symmetry and force checks beyond it: ranks up to 6, correlation up to 6."""
    c = ModelContract()
    c.config = {**TINY, "max_L": max_L, "max_ell": max_L, "correlation": correlation,
                "num_channels": 2, "num_product_channels": 2}  # fmt: skip
    c.test_symmetry()
    c.test_forces_finite_differences()


FREECG = {**TINY, "max_L": 2, "correlation": 2, "num_product_channels": 4, "freecg": True,
          "num_edges_eachgroup": 2}  # fmt: skip


class TestICTPFreeCG(ModelContract):
    """ICTP with FreeCG's coupling of abstract edges (2 groups of 2, even paths)."""

    config = FREECG


class TestICTPFreeCGOdd(ModelContract):
    """... with the pseudotensor paths: reflections keep the energy (parity carried back)."""

    config = {**FREECG, "freecg_odd_paths": True}


@pytest.mark.parametrize("max_rank", [1, 2, 3, 4])
@pytest.mark.parametrize("odd", [False, True], ids=["even", "odd"])
def test_freecg_symmetry_for_abstract_edges_of_rank_1_to_4(max_rank, odd):
    """Rotation, reflection, translation (M1) and permutation, float64, l_max 1-4."""
    c = ModelContract()
    c.config = {**FREECG, "max_L": min(max_rank, 2), "max_ell": max_rank,
                "freecg_max_rank": max_rank, "freecg_odd_paths": odd}  # fmt: skip
    c.test_symmetry()
    c.test_permutation()


def test_freecg_pseudotensors_change_sign_under_reflection():
    """The odd paths' features of a reflected molecule are -D(R) times the original's (a true
    tensor would give +D(R)), while the energy is unchanged (test_symmetry)."""
    c = ModelContract()
    c.config = {**FREECG, "freecg_odd_paths": True, "num_interactions": 2}
    model, atoms = c.model(), molecule(1)
    seen = []
    model.layers[1].abstract_edges.odd.register_forward_hook(
        lambda m, i, o: seen.append([t.detach() for t in o])
    )
    rotation = -random_rotation(2)
    c.energy_forces(model, atoms)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.numpy().T
    c.energy_forces(model, moved)
    before, after = seen
    for rank in model.layers[1].abstract_edges.odd.reached:
        d = rank_matrix(rotation, rank)
        size = float(before[rank].abs().max())
        assert size > 1e-9
        assert torch.allclose(after[rank], -(before[rank] @ d.T), atol=1e-9 * size)
        assert not torch.allclose(after[rank], before[rank] @ d.T, atol=1e-3 * size)


def test_freecg_with_zero_coupling_is_the_plain_ictp():
    """The layer is a residual addition: with its coupling weights zero, ICTP + FreeCG gives
    the plain ICTP's energy and forces (same other weights); freecg is off by default."""
    plain = tensorpot.build_model({**FREECG, "freecg": False, "num_edges_eachgroup": None})
    coupled = tensorpot.build_model(FREECG)
    missing = coupled.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(".abstract_edges." in k for k in missing)
    assert not any("abstract_edges" in k for k in plain.state_dict())
    c = ModelContract()
    e, f = c.energy_forces(coupled, molecule(3))
    e0, f0 = c.energy_forces(plain, molecule(3))
    assert abs(float(e - e0)) > 1e-6  # the coupling acts
    with torch.no_grad():
        for layer in coupled.layers:
            layer.abstract_edges.even.weight.zero_()
    e, f = c.energy_forces(coupled, molecule(3))
    assert abs(float(e - e0)) < 1e-12 and torch.allclose(f, f0, atol=1e-12)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"num_groups": 2}, "only act with freecg"),
        ({"freecg": True, "num_groups": 3, "num_edges_eachgroup": 2}, "must be the product"),
        ({"freecg": True, "freecg_max_rank": 4, "max_ell": 3}, "freecg_max_rank"),
        ({"freecg": True, "shuffle_shift": 4}, "shuffle_shift"),
    ],
)
def test_freecg_keys_are_checked(keys, message):
    with pytest.raises(ConfigError, match=message):
        tensorpot.build_model({**TINY, **keys})
