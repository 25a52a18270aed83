"""Demo: train a small ICTP on the bundled 3BPA data, print its test errors, use it through ASE.

Trains ``configs/ictp-3bpa-demo.yaml`` (450 train + 50 validation frames of 3BPA at 300 K, a
few minutes of CPU) into a fresh folder under ``runs/``, prints the error table on 200 test
frames at 300 K and 600 K beside those of the model trained for hours on the same protocol
(``pretrained/3bpa-ictp``: 32 channels, L 2, nu 3), then evaluates a few frames through the ASE
calculator.

    python examples/demo.py [--minutes 4] [--threads 2] [--runs runs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ase.io
import numpy as np

from tensorpot.calculators import TensorPotCalculator
from tensorpot.config import load_run_config
from tensorpot.data.readers import read_configurations
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.models import load_model
from tensorpot.nn import cpu_kernel
from tensorpot.training import train

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "pretrained" / "3bpa-ictp" / "3bpa-ictp.model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="the run goes here")
    args = parser.parse_args()
    run_dir = args.runs / time.strftime("demo-%Y%m%d-%H%M%S")
    config = load_run_config(
        REPO / "configs" / "ictp-3bpa-demo.yaml",
        [f"output_dir={run_dir}", f"time_budget_minutes={args.minutes}", f"threads={args.threads}"],
    )
    start = time.perf_counter()
    # compiled once per machine and environment, outside the training budget
    kernel = cpu_kernel.load()
    print(f"CPU kernel: {'ready' if kernel else 'not built, PyTorch operations'} "
          f"({time.perf_counter() - start:.0f} s)")  # fmt: skip
    result = train(config)
    print(f"\nmodel written to {result.model_path}; error table in {result.errors_path}")

    if PRETRAINED.exists():
        compare_with_pretrained(result.error_tables, config.test_files)

    calc = TensorPotCalculator(model_path=result.model_path)
    frames = ase.io.read(REPO / "data" / "3bpa" / "test_600K_first200.xyz", index=":5")
    print(f"\n{'frame':>5} {'E model (eV)':>16} {'E DFT (eV)':>16} {'F RMSE (eV/A)':>14} {'ms':>7}")
    for k, atoms in enumerate(frames):
        reference_e, reference_f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = calc
        start = time.perf_counter()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        ms = 1e3 * (time.perf_counter() - start)
        rmse = float(np.sqrt(np.mean((forces - reference_f) ** 2)))
        print(f"{k:5d} {energy:16.4f} {reference_e:16.4f} {rmse:14.4f} {ms:7.1f}")


def compare_with_pretrained(tables: dict[str, dict[str, float]], test_files: list[str]) -> None:
    """Print the demo model's test RMSEs beside those of the committed 3BPA model."""
    model = load_model(PRETRAINED)
    print(f"\n{'test set (RMSE)':<22} {'demo E':>8} {'demo F':>8} {'pretrained E':>13} "
          f"{'pretrained F':>13}   (meV, meV/A; {PRETRAINED.relative_to(REPO)})")  # fmt: skip
    for path in test_files:  # the demo's test files: distinct names, their stems
        name, demo = Path(path).stem, tables[Path(path).stem]
        table, _ = evaluate(model, read_configurations(path))
        print(f"{name:<22} {demo['energy_rmse']:8.1f} {demo['forces_rmse']:8.1f} "
              f"{table['energy_rmse']:13.1f} {table['forces_rmse']:13.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
