"""An ASE calculator around any :class:`~tensorpot.models.base.Potential`.

Energies in eV, forces in eV/Å, stress in eV/Å³ (ASE's sign: ``sigma = (1/V) dE/d(strain)``,
Voigt order xx, yy, zz, yz, xz, xy). Stress is only reported for cells with a periodic
direction and a non-zero volume.

Every structure is checked as the command line checks a data file (through
:class:`~tensorpot.data.configuration.Configuration`: finite positions and cell, known elements,
no two atoms at the same position, a usable periodic cell), so bad input is a
:class:`~tensorpot.errors.DataError` naming the problem, never NaN energies.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.data.configuration import Configuration
from tensorpot.devices import resolve_device
from tensorpot.errors import DataError
from tensorpot.models.base import Potential


class TensorPotCalculator(Calculator):
    """ASE calculator that evaluates a tensorpot model on one structure at a time.

    Args:
        model: a model instance, which the calculator copies (it evaluates the copy in eval
            mode with frozen parameters); exactly one of ``model`` and ``model_path`` must be
            given.
        model_path: a file written by ``tensorpot.models.io.save_model``.
        device: torch device to run on (the model is moved there).
        **kwargs: passed on to :class:`ase.calculators.calculator.Calculator`.

    Raises:
        ValueError: if neither or both of ``model`` and ``model_path`` are given.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "dipole"]

    def __init__(
        self,
        model: Potential | None = None,
        model_path: str | None = None,
        device: str = "cpu",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if (model is None) == (model_path is None):
            raise ValueError("give exactly one of `model` and `model_path`")
        if model is None:
            from tensorpot.models.io import load_model

            model = load_model(model_path)
        else:  # the caller's model keeps its mode and its trainable parameters
            model = copy.deepcopy(model)
        # frozen for inference (as MACE's calculator does): no parameter gradients are
        # recorded, and the radial MLP may use the CPU kernel (tensorpot.nn.radial.matmul)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        properties = []  # what this model gives
        if self.model.has_energy:
            properties += ["energy", "free_energy", "energies", "forces", "stress"]
        if "dipole" in self.model.outputs:
            properties.append("dipole")
        self.implemented_properties = properties
        self._known = set(self.model.atomic_numbers)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Fill ``self.results`` with what the model predicts: energy, free_energy, energies,
        forces (and stress for periodic cells) for a model with an energy; ``dipole`` (ASE's
        property), ``polarizability`` ([3, 3]) and named scalar properties by their names where
        the model has those outputs (in the units of its training labels).

        Raises:
            DataError: if the structure holds an element the model was not trained on, two
                atoms at the same position, a NaN or infinite coordinate, or a degenerate
                periodic cell.
        """
        properties = ["energy"] if properties is None else properties
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self._check_elements(atoms)
        check_structure(atoms)
        periodic = bool(atoms.pbc.any()) and abs(atoms.cell.volume) > 0
        graph = atoms_to_graph(atoms, self.model.r_max)
        batch = collate([graph], dtype=self.model.dtype).to(self.model.device)
        with torch.enable_grad():
            out = self.model(batch, compute_forces=True, compute_stress=periodic)
        self.results = {}
        if out.energy is not None:
            energy = float(out.energy.detach()[0])
            self.results.update(energy=energy, free_energy=energy)
            self.results["energies"] = _numpy(out.node_energy)
            self.results["forces"] = _numpy(out.forces)
            if periodic:
                stress = _numpy(out.stress)[0]
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
        if out.dipole is not None:
            self.results["dipole"] = _numpy(out.dipole)[0]
        if out.polarizability is not None:
            self.results["polarizability"] = _numpy(out.polarizability)[0]
        for name, value in (out.properties or {}).items():
            self.results[name] = float(value.detach()[0])

    def _check_elements(self, atoms: Atoms) -> None:
        unknown = sorted(set(int(z) for z in atoms.numbers) - self._known)
        if unknown:
            names = ", ".join(_symbol(z) for z in unknown)
            known = ", ".join(_symbol(z) for z in sorted(self._known))
            raise DataError(f"the model does not know element(s) {names}; it knows {known}")


def check_structure(atoms: Atoms) -> None:
    """Raise :class:`DataError` for a structure the command line would refuse in a data file.

    The checks are those of :class:`Configuration` (shapes, finite values, elements 1-118,
    atoms at the same position, periodic directions with a usable cell); the message names
    the structure by its formula and the atoms involved.
    """
    try:
        Configuration(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                      pbc=atoms.pbc)  # fmt: skip
    except DataError as err:  # the formula only when it is needed: it costs a quarter
        raise DataError(err.problem, file=f"structure {atoms.get_chemical_formula()}") from None


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().copy()
