"""ICTP through the shared model contract, over the grid of ranks, correlations and bases."""

from __future__ import annotations

import itertools

import pytest

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
