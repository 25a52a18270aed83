"""The contract every model family passes (NequIP's shared model tests, in our terms).

A family's test module subclasses :class:`ModelContract` and sets ``config`` (a tiny
``build_model`` dict). Every check is a property of a physical potential (ICTP spec M1-M6):
symmetry, conservative forces, stress, locality, smoothness at the cutoff, E0/shift,
batching, and the save/load round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tests.conftest import random_rotation


def molecule(seed: int = 0, n: int = 6, symbols: str = "HCOHCN") -> Atoms:
    """A compact random molecule whose atoms are 0.9-2.5 Å apart."""
    rng = np.random.default_rng(seed)
    positions = [np.zeros(3)]
    while len(positions) < n:
        p = positions[rng.integers(len(positions))] + rng.normal(size=3) * 1.0
        d = np.linalg.norm(np.asarray(positions) - p, axis=1)
        if d.min() > 0.9:
            positions.append(p)
    return Atoms(symbols[:n], positions=np.asarray(positions))


def crystal(seed: int = 0) -> Atoms:
    """A small triclinic periodic cell (shorter than the cutoff: atoms see their images)."""
    rng = np.random.default_rng(seed)
    cell = np.diag([2.6, 2.9, 3.1]) + rng.uniform(-0.3, 0.3, size=(3, 3))
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.45, 0.55], [0.2, 0.7, 0.3]])
    return Atoms("CHO", scaled_positions=frac, cell=cell, pbc=True)


class ModelContract:
    """Mixin: subclasses set ``config`` and get the tests below."""

    config: dict = {}
    atol = 1e-10  # float64

    def model(self, **overrides) -> tensorpot.models.Potential:
        return tensorpot.build_model({**self.config, **overrides})

    @staticmethod
    def predict(model, structures, stress: bool = False):
        graphs = [atoms_to_graph(a, model.r_max) for a in structures]
        batch = collate(graphs, dtype=model.dtype)
        return model(batch, compute_forces=True, compute_stress=stress)

    def energy_forces(self, model, atoms):
        out = self.predict(model, [atoms])
        return out.energy.detach()[0], out.forces.detach()

    def test_symmetry(self):
        """M1: E invariant under rotation, reflection, translation; forces co-rotate."""
        model, atoms = self.model(), molecule(1)
        e, f = self.energy_forces(model, atoms)
        for k, sign in enumerate([1.0, -1.0]):
            rot = sign * random_rotation(k).numpy()
            moved = atoms.copy()
            moved.positions = atoms.positions @ rot.T + np.array([0.3, -1.1, 2.0])
            e2, f2 = self.energy_forces(model, moved)
            assert abs(float(e2 - e)) < self.atol * max(1.0, abs(float(e)))
            assert torch.allclose(f2, f @ torch.as_tensor(rot).T.to(f), atol=self.atol)

    def test_permutation(self):
        """M1: permuting atoms permutes forces and keeps the energy."""
        model, atoms = self.model(), molecule(2)
        perm = np.random.default_rng(0).permutation(len(atoms))
        e, f = self.energy_forces(model, atoms)
        e2, f2 = self.energy_forces(model, atoms[perm])
        assert abs(float(e2 - e)) < self.atol * max(1.0, abs(float(e)))
        assert torch.allclose(f2, f[torch.as_tensor(perm)], atol=self.atol)

    def test_forces_finite_differences(self):
        """M2: F = -dE/dx agrees with central differences."""
        model, atoms = self.model(), molecule(3)
        _, f = self.energy_forces(model, atoms)
        h = 1e-5
        for atom, axis in [(0, 0), (2, 1), (len(atoms) - 1, 2)]:
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[atom, axis] += h
            minus.positions[atom, axis] -= h
            fd = -(self.energy_forces(model, plus)[0] - self.energy_forces(model, minus)[0]) / (
                2 * h
            )
            assert abs(float(fd - f[atom, axis])) < 1e-6 * max(1.0, float(f.abs().max()))

    def test_stress_finite_differences(self):
        """M5: stress = (1/V) dE/d(strain), against finite differences of a deformed cell."""
        model, atoms = self.model(), crystal(1)
        out = self.predict(model, [atoms], stress=True)
        stress = out.stress.detach()[0].numpy()
        assert np.allclose(out.virials.detach()[0].numpy(), -stress * atoms.get_volume())
        h = 1e-5
        for i, j in [(0, 0), (1, 2), (2, 1), (2, 2)]:
            energies = []
            for s in (h, -h):
                strain = np.eye(3)
                strain[i, j] += s / 2
                strain[j, i] += s / 2
                deformed = atoms.copy()
                deformed.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                energies.append(float(self.predict(model, [deformed]).energy.detach()[0]))
            fd = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
            assert abs(fd - stress[i, j]) < 1e-6 * max(1.0, np.abs(stress).max())

    def test_extensive_and_local(self):
        """M3: two copies farther apart than r_max: E is the sum, forces do not cross."""
        model = self.model()
        a, b = molecule(4), molecule(5)
        b.positions += np.array([model.r_max * 3 + 10.0, 0.0, 0.0])
        e_a, _ = self.energy_forces(model, a)
        e_b, _ = self.energy_forces(model, b)
        both = a + b
        e_ab, f_ab = self.energy_forces(model, both)
        assert abs(float(e_ab - e_a - e_b)) < self.atol * max(1.0, abs(float(e_ab)))
        moved = both.copy()
        moved.positions[0] += 0.1
        _, f_moved = self.energy_forces(model, moved)
        assert torch.allclose(f_moved[len(a) :], f_ab[len(a) :], atol=self.atol)
        assert not torch.allclose(f_moved[: len(a)], f_ab[: len(a)], atol=1e-6)

    def test_smooth_at_cutoff(self):
        """M4: energy and forces continuous as a neighbour crosses r_max."""
        model = self.model()
        base = molecule(6, n=3)
        direction = np.array([0.6, 0.0, 0.8])
        values = []
        for r in (model.r_max - 1e-6, model.r_max + 1e-6):
            atoms = base + Atoms("H", positions=[base.positions[0] + r * direction])
            # keep the far atom out of reach of all but atom 0
            assert np.linalg.norm(atoms.positions[1:3] - atoms.positions[3], axis=1).min() > r - 3
            values.append(self.energy_forces(model, atoms))
        assert abs(float(values[0][0] - values[1][0])) < 1e-9
        assert torch.allclose(values[0][1], values[1][1], atol=1e-6)

    def test_batch_equals_single_frames(self):
        """A batch predicts what each frame predicts alone; no cross-frame gradient."""
        model = self.model()
        frames = [molecule(7), molecule(8, n=4), crystal(2)]
        batch = self.predict(model, frames)
        offset = 0
        for k, atoms in enumerate(frames):
            single = self.predict(model, [atoms])
            assert abs(float(batch.energy[k].detach() - single.energy[0].detach())) < self.atol * 10
            f = batch.forces[offset : offset + len(atoms)]
            assert torch.allclose(f, single.forces, atol=self.atol)
            offset += len(atoms)

    def test_e0_and_shift(self):
        """M6: with the learned readouts zeroed, E = sum over atoms of (shift_Z + E0_Z)."""
        zs = self.config.get("atomic_numbers", [1, 6, 7, 8])
        e0s = {z: -1.5 * z for z in zs}
        shifts = [0.1 * (k + 1) for k in range(len(zs))]
        model = self.model(E0s=e0s, atomic_inter_shift=shifts)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "readout" in name:
                    p.zero_()
        atoms = molecule(9)
        expected = sum(e0s[z] + shifts[zs.index(z)] for z in atoms.numbers)
        e, _ = self.energy_forces(model, atoms)
        assert abs(float(e) - expected) < 1e-10

    def test_save_load_round_trip(self, tmp_path):
        model, atoms = self.model(seed=3).eval(), molecule(10)
        path = tensorpot.save_model(model, tmp_path / "m.pt")
        loaded = tensorpot.load_model(path)
        e, f = self.energy_forces(model, atoms)
        e2, f2 = self.energy_forces(loaded, atoms)
        assert float(e2) == float(e) and torch.equal(f, f2)
        with pytest.raises(FileExistsError):
            tensorpot.save_model(model, path)

    def test_float32_agrees_with_float64(self):
        atoms = molecule(11)
        e64, f64 = self.energy_forces(self.model(dtype="float64"), atoms)
        e32, f32 = self.energy_forces(self.model(dtype="float32"), atoms)
        assert e32.dtype == torch.float64 and f32.dtype == torch.float32  # totals in float64
        assert abs(float(e32) - float(e64)) < 1e-4 * max(1.0, abs(float(e64)))
        assert torch.allclose(f32.double(), f64, atol=1e-3 * max(1.0, float(f64.abs().max())))

    def test_float32_sums_reference_energies_in_float64(self):
        """Totals are float64 whatever the dtype: E0s of -2042 eV per atom are not quantised."""
        zs = self.config.get("atomic_numbers", [1, 6, 7, 8])
        e0s = {z: -1000.0 - 41.982 * z - 1e-6 * k for k, z in enumerate(zs)}
        model = self.model(E0s=e0s, dtype="float32")
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "readout" in name:
                    p.zero_()
        atoms = molecule(12, n=6) + molecule(13, n=6)  # 12 atoms, some far apart
        atoms.positions[6:] += 20.0
        e, f = self.energy_forces(model, atoms)
        assert e.dtype == torch.float64 and model.E0s.dtype == torch.float64
        expected = sum(e0s[int(z)] for z in atoms.numbers)
        assert abs(float(e) - expected) < 1e-9
        assert torch.equal(f, torch.zeros_like(f))

    def test_no_neighbours(self):
        """An isolated atom and a dimer stretched past r_max: finite energies, zero forces,
        the stretched dimer's energy the sum of its atoms' (also batched and with stress)."""
        model = self.model(seed=5)
        single = Atoms("C", positions=[[0.0, 0.0, 0.0]])
        dimer = Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, model.r_max + 0.5]])
        oxygen = Atoms("O", positions=[[1.0, 2.0, 3.0]])
        box = Atoms("C", positions=[[1.0, 1.0, 1.0]], cell=np.eye(3) * (model.r_max + 1.0),
                    pbc=True)  # fmt: skip
        e_c, f_c = self.energy_forces(model, single)
        e_o, _ = self.energy_forces(model, oxygen)
        e_d, f_d = self.energy_forces(model, dimer)
        assert torch.isfinite(e_c) and torch.equal(f_c, torch.zeros_like(f_c))
        assert torch.equal(f_d, torch.zeros_like(f_d))
        assert abs(float(e_d - e_c - e_o)) < self.atol * max(1.0, abs(float(e_d)))
        out = self.predict(model, [single, molecule(14), box], stress=True)
        assert abs(float(out.energy[0].detach() - e_c)) < self.atol * max(1.0, abs(float(e_c)))
        assert abs(float(out.energy[2].detach() - e_c)) < self.atol * max(1.0, abs(float(e_c)))
        assert torch.isfinite(out.forces).all() and torch.isfinite(out.stress).all()
        assert torch.equal(out.stress[2], torch.zeros_like(out.stress[2]))
        model.train()  # training builds the graph of the forces: it must hold without edges
        out = self.predict(model, [single, dimer])
        loss = out.energy.square().sum() + out.forces.square().sum()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
