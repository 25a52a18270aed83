"""One NVE step (velocity Verlet, 0.5 fs) through three engines, in one run: ASE with the
Python model (``TensorPotCalculator``, as ``tensorpot md`` runs), ASE with the exported model
(``tensorpot export``: the ``torch.export`` program, loaded from its file, called with
tensorpot's neighbour list by a minimal ASE calculator defined here), and LAMMPS
(``tensorpot md --engine lammps``: ``fix nve`` with the Python model through ``fix
external``). Each engine's step includes its neighbour list, the model call with forces (and
virials for the cell) and the integration.

Structures: the first 3BPA molecule (27 atoms) and a periodic cell of 64 H, C, N and O atoms
(``export_speed.periodic_cell``: random positions at least 1 Å apart in an 8.6 Å cube).
Velocities: Maxwell-Boltzmann at 300 K, seeded. Per engine and structure, ``--rounds`` rounds
of ``--steps`` steps, the engines interleaved round by round after one warm-up round; the
median of the rounds' time per step is reported, with its ratio to ASE with the Python model.
The model: ``--model FILE``, or an untrained float64 ICTP (C 16, L 2, nu 3, r_max 5 Å; speed
does not depend on the weights).

    python benchmarks/md_engines.py --steps 50 --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tensorpot  # noqa: E402
from export_speed import E0S, periodic_cell  # noqa: E402
from tensorpot.benchmarking.harness import load_frames  # noqa: E402
from tensorpot.calculators import TensorPotCalculator  # noqa: E402
from tensorpot.data.atoms import atoms_to_graph  # noqa: E402
from tensorpot.dynamics import MDSettings  # noqa: E402
from tensorpot.dynamics.lammps import LammpsVerlet  # noqa: E402
from tensorpot.models.export import engine_inputs, save_exported  # noqa: E402

MODEL = {"model": "ictp", "num_channels": 16, "max_L": 2, "correlation": 3,
         "avg_num_neighbors": 15.0, "r_max": 5.0, "atomic_numbers": [1, 6, 7, 8], "E0s": E0S,
         "dtype": "float64"}  # fmt: skip
TIMESTEP = 0.5  # fs


class ExportedCalculator(Calculator):
    """ASE calculator around an exported program: energy, forces, and stress for a cell."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, program, r_max: float):
        super().__init__()
        self.program, self.r_max = program, r_max

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        out = self.program(*engine_inputs(atoms_to_graph(self.atoms, self.r_max)))
        energy = float(out["energy"])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out["forces"].numpy().copy()}  # fmt: skip
        if self.atoms.pbc.any():
            stress = out["stress"].numpy()
            self.results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def start(atoms: Atoms, seed: int = 0) -> Atoms:
    """A copy of ``atoms`` with Maxwell-Boltzmann velocities at 300 K."""
    atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    rng = np.random.default_rng(seed)
    scale = np.sqrt(atoms.get_masses() * units.kB * 300.0)[:, None]
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * scale)
    return atoms


def ase_engine(atoms: Atoms, calc: Calculator):
    """``run(n)``: n velocity Verlet steps in ASE."""
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=TIMESTEP * units.fs)
    return dyn.run


def lammps_engine(atoms: Atoms, model):
    """``run(n)``: n steps of one LAMMPS ``run``; and the instance to close."""
    atoms.calc = TensorPotCalculator(model=model)
    verlet = LammpsVerlet(atoms, MDSettings(steps=1, timestep=TIMESTEP))
    next(iter(verlet.irun(0)))  # LAMMPS's set-up: the first forces
    return verlet.run, verlet


def force_difference(atoms: Atoms, model, program) -> float:
    """Largest |F_exported - F_python| (eV/Å) on ``atoms``: both engines run the same model."""
    python = start(atoms)
    python.calc = TensorPotCalculator(model=model)
    exported = start(atoms)
    exported.calc = ExportedCalculator(program, model.r_max)
    return float(np.abs(python.get_forces() - exported.get_forces()).max())


def seconds(run, steps: int) -> float:
    begin = time.perf_counter()
    run(steps)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file (default: an untrained ICTP)")
    parser.add_argument("--steps", type=int, default=50, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        model = tensorpot.load_model(args.model)
    else:
        model = tensorpot.build_model(MODEL)
    model = model.eval().requires_grad_(False)
    molecule = load_frames(Path(__file__).parents[1] / "data/3bpa/test_300K_first200.xyz", 1)[0]
    structures = {"3BPA molecule (27 atoms)": molecule, "periodic cell (64 atoms)": periodic_cell()}
    print(f"torch {torch.__version__}, {args.threads} threads, {model.dtype}, median of "
          f"{args.rounds} interleaved rounds of {args.steps} NVE steps (ms/step)\n")  # fmt: skip
    print("| structure | ASE, Python model | ASE, exported model | LAMMPS | exported / Python | "
          "LAMMPS / ASE Python |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    notes = []
    with tempfile.TemporaryDirectory() as folder:
        program = torch.export.load(save_exported(model, Path(folder) / "m.pt2")).module()
        for name, atoms in structures.items():
            lammps_run, verlet = lammps_engine(start(atoms), model)
            engines = {
                "python": ase_engine(start(atoms), TensorPotCalculator(model=model)),
                "exported": ase_engine(start(atoms), ExportedCalculator(program, model.r_max)),
                "lammps": lammps_run,
            }
            times: dict[str, list[float]] = {k: [] for k in engines}
            try:
                for round_ in range(args.rounds + 1):  # round 0 warms up
                    for key, run in engines.items():
                        t = seconds(run, args.steps)
                        if round_:
                            times[key].append(1e3 * t / args.steps)
            finally:
                verlet.close()
            ms = {k: statistics.median(v) for k, v in times.items()}
            notes.append(f"{name}: exported vs Python max |dF| "
                         f"{force_difference(atoms, model, program):.1e} eV/Å")  # fmt: skip
            print(f"| {name} | {ms['python']:.2f} | {ms['exported']:.2f} | {ms['lammps']:.2f} | "
                  f"{ms['exported'] / ms['python']:.2f} | "
                  f"{ms['lammps'] / ms['python']:.2f} |")  # fmt: skip
    print("\n" + "; ".join(notes))


if __name__ == "__main__":
    main()
