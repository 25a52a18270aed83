"""Worst symmetry errors of ICTP over the grid max_L 0-4, correlation 1-4, all product bases.

For each model (float64, untrained, 4 channels) and a 3BPA molecule (27 atoms, r_max 5 Å),
applies a random rotation, a reflection, a translation and an atom permutation, and reports the
largest |E' - E| / |E| and max |F' - R F| / max |F| over the grid.

    python benchmarks/symmetry_errors.py
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

import tensorpot
from tensorpot.benchmarking.harness import load_frames
from tensorpot.data.atoms import atoms_to_graph, collate


def energy_forces(model, atoms):
    out = model(collate([atoms_to_graph(atoms, model.r_max)], dtype=model.dtype))
    return float(out.energy.detach()[0]), out.forces.detach().numpy()


def main() -> None:
    torch.set_num_threads(2)
    atoms = load_frames(Path(__file__).parents[1] / "data" / "3bpa" / "test_300K_first200.xyz", 1)[
        0
    ]
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    transform = -q if np.linalg.det(q) > 0 else q  # an improper rotation: rotation + reflection
    perm = rng.permutation(len(atoms))
    moved = atoms[perm]
    moved.positions = moved.positions @ transform.T + np.array([1.7, -3.2, 0.4])
    worst_e, worst_f, rows = 0.0, 0.0, 0
    for max_l, nu, basis in itertools.product(range(5), range(1, 5), ["full", "sym", "sym+lt"]):
        model = tensorpot.build_model({
            "model": "ictp", "r_max": 5.0, "num_channels": 4, "max_L": max_l, "max_ell": max_l,
            "correlation": nu, "product_basis": basis, "avg_num_neighbors": 15.0,
        })  # fmt: skip
        e, f = energy_forces(model, atoms)
        e2, f2 = energy_forces(model, moved)
        worst_e = max(worst_e, abs(e2 - e) / abs(e))
        worst_f = max(worst_f, np.abs(f2 - f[perm] @ transform.T).max() / np.abs(f).max())
        rows += 1
    print(f"{rows} models (max_L 0-4 x correlation 1-4 x full/sym/sym+lt), float64, 3BPA frame:")
    print(f"worst relative energy error {worst_e:.2e}, worst relative force error {worst_f:.2e}")


if __name__ == "__main__":
    main()
