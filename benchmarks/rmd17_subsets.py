"""Write frames of an rMD17 file as extended XYZ in eV (the same-budget runs' fixed splits).

    python benchmarks/rmd17_subsets.py aspirin 0:50 runs/rmd17/aspirin_train_0-49.xyz
    python benchmarks/rmd17_subsets.py aspirin 50:100 runs/rmd17/aspirin_valid_50-99.xyz

Reads ``rmd17_<molecule>_train_01.npz`` from the shared data beside the repository (kcal/mol,
kcal/mol/Å) through tensorpot's reader, which converts to eV and eV/Å.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
from ase import Atoms

from tensorpot.data.readers import read_configurations

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rmd17" / "npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("molecule")
    parser.add_argument("frames", help="start:stop, Python slice of the file's frames")
    parser.add_argument("output")
    parser.add_argument("--split", default="train_01", help="file suffix (default train_01)")
    args = parser.parse_args()
    start, stop = (int(x) for x in args.frames.split(":"))
    configs = read_configurations(DATA / f"rmd17_{args.molecule}_{args.split}.npz")[start:stop]
    output = Path(args.output)
    if output.exists():
        raise SystemExit(f"{output} exists: not overwritten")
    output.parent.mkdir(parents=True, exist_ok=True)
    frames = []
    for c in configs:
        atoms = Atoms(numbers=c.numbers, positions=c.positions)
        atoms.info["energy"] = c.energy
        atoms.arrays["forces"] = c.forces
        frames.append(atoms)
    ase.io.write(output, frames, format="extxyz")
    print(f"{len(configs)} frames -> {output}")


if __name__ == "__main__":
    main()
