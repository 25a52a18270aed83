"""A relaxed dihedral scan of 3BPA labelled with GFN2-xTB, for ``tensorpot eval --profile``.

3BPA (3-(benzyloxy)pyridin-2-amine) has three torsions along its ring-O-CH2-ring linker; the
3BPA data set's dihedral slices fix the first (alpha, about the pyridine C-O bond) and scan the
other two. This script scans one of them, by default beta, the torsion about the O-CH2 bond
(C_pyridine-O-CH2-C_phenyl), with alpha held fixed as in those slices (``--fix``):

1. take one frame of a 3BPA file and relax it with GFN2-xTB (tblite, the ``xtb`` extra), the
   scanned and the fixed torsions held at their own values;
2. step the scanned torsion by ``--step`` degrees ``--points`` times (rigidly turning the side
   of the molecule beyond the rotated bond, from the previous relaxed geometry), and relax every
   other degree of freedom with both torsions held (ASE ``FixInternals``, BFGS to ``--fmax``);
3. label each relaxed frame with the GFN2-xTB energy and forces (eV, eV/Å; the forces include
   the torsional force the constraint held) and write extended XYZ with ``info["dihedral"]``
   (degrees, in [-180, 180)).

The labels are GFN2-xTB, not the data set's DFT: the scan exercises the profile workflow, not
the paper's DFT profile. Run it on one core (tblite uses OpenMP)::

    OMP_NUM_THREADS=1 python benchmarks/make_dihedral_scan.py data/3bpa/dihedral_scan_xtb.xyz
    OMP_NUM_THREADS=1 python benchmarks/make_dihedral_scan.py /tmp/s.xyz --points 2  # a check
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixInternals
from ase.neighborlist import natural_cutoffs, neighbor_list
from ase.optimize import BFGS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

TORSIONS = ("alpha", "beta", "gamma")


def bonds(atoms: Atoms) -> set[tuple[int, int]]:
    """Covalent bonds ``(i, j)``, ``i < j``: within 1.2 times ASE's natural cutoffs."""
    first, second = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    return {(int(i), int(j)) for i, j in zip(first, second) if i < j}


def neighbours(bond_set: set[tuple[int, int]], atom: int) -> list[int]:
    return sorted({j for i, j in bond_set if i == atom} | {i for i, j in bond_set if j == atom})


def linker_torsion(atoms: Atoms, name: str) -> tuple[int, int, int, int]:
    """The atoms of torsion ``alpha``, ``beta`` or ``gamma`` of the ring-O-CH2-ring linker.

    The chain is N_ring-C_pyr-O-CH2-C_ipso-C_ortho: alpha turns about C_pyr-O, beta about
    O-CH2, gamma about CH2-C_ipso.
    """
    numbers = atoms.numbers
    bond_set = bonds(atoms)
    (oxygen,) = np.flatnonzero(numbers == 8)
    carbons = [a for a in neighbours(bond_set, oxygen) if numbers[a] == 6]
    hydrogens = {a: sum(numbers[b] == 1 for b in neighbours(bond_set, a)) for a in carbons}
    ch2 = max(carbons, key=hydrogens.get)
    (c_pyr,) = [a for a in carbons if a != ch2]
    (c_ipso,) = [a for a in neighbours(bond_set, ch2) if numbers[a] == 6]
    ring_n = [a for a in neighbours(bond_set, c_pyr) if numbers[a] in (6, 7) and a != oxygen]
    c_ortho = [a for a in neighbours(bond_set, c_ipso) if numbers[a] == 6 and a != ch2]
    chain = (min(ring_n), c_pyr, oxygen, ch2, c_ipso, min(c_ortho))
    start = TORSIONS.index(name)
    return tuple(int(a) for a in chain[start : start + 4])


def moving_side(atoms: Atoms, torsion: tuple[int, int, int, int]) -> np.ndarray:
    """Mask of the atoms on the far side of the torsion's middle bond (with its last atom)."""
    bond_set = bonds(atoms) - {tuple(sorted(torsion[1:3]))}
    rows, cols = np.array(sorted(bond_set)).T
    n = len(atoms)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    if labels[torsion[1]] == labels[torsion[2]]:
        raise ValueError(f"the bond {torsion[1:3]} is in a ring: it cannot be turned")
    return labels == labels[torsion[2]]


def relax(atoms: Atoms, held: list[tuple[float, tuple[int, ...]]], fmax: float, steps: int) -> int:
    """Relax ``atoms`` in place with each torsion of ``held`` at its angle (degrees); returns
    the number of BFGS steps."""
    atoms.set_constraint(FixInternals(dihedrals_deg=[[a, list(t)] for a, t in held]))
    optimizer = BFGS(atoms, logfile=None)
    optimizer.run(fmax=fmax, steps=steps)
    atoms.set_constraint()
    return optimizer.nsteps


def labelled(atoms: Atoms, calc, angle: float, info: dict) -> Atoms:
    """A copy of ``atoms`` with GFN2-xTB energy and full forces as plain extxyz labels."""
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    frame.info.update(info, dihedral=float((angle + 180.0) % 360.0 - 180.0))
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="extxyz file to write (refused if it exists)")
    parser.add_argument("--source", type=Path, default=Path("data/3bpa/train_300K.xyz"))
    parser.add_argument("--frame", type=int, default=0, help="frame of --source to start from")
    parser.add_argument("--torsion", choices=TORSIONS, default="beta", help="torsion scanned")
    parser.add_argument(
        "--fix",
        choices=TORSIONS,
        nargs="*",
        default=["alpha"],
        help="torsions held at their starting values (default: alpha)",
    )
    parser.add_argument("--points", type=int, default=24, help="frames of the scan")
    parser.add_argument("--step", type=float, default=15.0, help="degrees between frames")
    parser.add_argument("--fmax", type=float, default=0.01, help="relaxation target (eV/Å)")
    parser.add_argument("--max-steps", type=int, default=300, help="BFGS steps per frame")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; move it away first")
    from tblite.ase import TBLite

    calc = TBLite(method="GFN2-xTB", verbosity=0)
    atoms = ase.io.read(args.source, index=args.frame)
    atoms.calc, atoms.pbc, atoms.cell = calc, False, None
    torsion = linker_torsion(atoms, args.torsion)
    mask = moving_side(atoms, torsion)
    start = atoms.get_dihedral(*torsion)
    fixed = [linker_torsion(atoms, name) for name in args.fix if name != args.torsion]
    fixed = [(atoms.get_dihedral(*t), t) for t in fixed]
    steps = relax(atoms, [(start, torsion), *fixed], args.fmax, args.max_steps)
    print(f"torsion {args.torsion} = atoms {torsion}, start {start:.1f} deg ({steps} steps); "
          f"held: {', '.join(f'{t} at {a:.1f} deg' for a, t in fixed) or 'none'}")  # fmt: skip
    info = {"method": "GFN2-xTB", "torsion": args.torsion, "torsion_atoms": np.array(torsion)}
    frames = []
    for k in range(args.points):
        t0 = time.perf_counter()
        angle = start + k * args.step
        atoms.set_dihedral(*torsion, angle, mask=mask)
        steps = relax(atoms, [(angle, torsion), *fixed], args.fmax, args.max_steps)
        frames.append(labelled(atoms, calc, angle, info))
        print(f"{k:3d}  dihedral {frames[-1].info['dihedral']:7.1f}  "
              f"E {frames[-1].get_potential_energy():.6f} eV  {steps:3d} steps  "
              f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
    ase.io.write(args.out, frames, format="extxyz")
    print(f"wrote {len(frames)} frames to {args.out}")


if __name__ == "__main__":
    main()
