"""Demo: an ICTP model on the bundled 3BPA frames through the ASE calculator.

Builds an (untrained) ICTP model, evaluates energies and forces of the first frames of
``data/3bpa/test_300K_first200.xyz`` through :class:`tensorpot.calculators.TensorPotCalculator`,
and prints them with the time per structure.

    python examples/demo.py [--frames 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

import tensorpot
from tensorpot.calculators import TensorPotCalculator

DATA = Path(__file__).resolve().parents[1] / "data" / "3bpa" / "test_300K_first200.xyz"
E0S = {
    1: -13.587222780835477,
    6: -1029.4889999855063,
    7: -1484.9814568572233,
    8: -2041.9816003861047,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = {"model": "ictp", "num_channels": 16, "max_L": 2, "correlation": 3,
              "product_basis": "sym", "E0s": E0S, "avg_num_neighbors": 15.0}  # fmt: skip
    model = tensorpot.build_model(config)
    print(f"ICTP: {sum(p.numel() for p in model.parameters())} parameters, {config}")
    calc = TensorPotCalculator(model=model)
    frames = ase.io.read(DATA, index=f":{args.frames}")
    print(
        f"\n{'frame':>5} {'E model (eV)':>16} {'E DFT (eV)':>16} {'|F| max (eV/A)':>15} {'ms':>8}"
    )
    times = []
    for k, atoms in enumerate(frames):
        reference = atoms.get_potential_energy()
        atoms.calc = calc
        start = time.perf_counter()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        times.append(time.perf_counter() - start)
        fmax = np.linalg.norm(forces, axis=1).max()
        print(f"{k:5d} {energy:16.4f} {reference:16.4f} {fmax:15.4f} {1e3 * times[-1]:8.1f}")
    print(f"\nmedian time per structure (energy + forces, {args.threads} threads): "
          f"{1e3 * float(np.median(times)):.1f} ms")  # fmt: skip
    print("The model is untrained: its energies are the E0s plus noise from random weights.")


if __name__ == "__main__":
    main()
