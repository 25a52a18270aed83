"""ICTP's dipole and polarizability heads against MACE's tensorial models, in one run.

On the GFN2-xTB data set of ``benchmarks/xtb_labels.py`` (docs/benchmarks/tensorial_data.md),
the same training and validation frames, the same E0s, the same epochs, batch size, learning
rate and model size, trains in turn

* tensorpot ICTP with outputs ``[energy, dipole, polarizability]`` (energy + forces + dipole +
  polarizability) and ``[dipole, polarizability]``;
* MACE 0.3.16 ``EnergyDipolesMACE`` (energy + forces + dipole) and ``AtomicDielectricMACE``
  (dipole + polarizability), with MACE's own training command (``benchmarks/mace_tensorial.py``),

and prints the error tables of all four on the validation frames, on other frames of the
training molecules (``test_seen``) and on molecules never trained on (``test_unseen``), with the
training time (the epochs with their validation; MACE's start-up and final tables excluded).
Loss weights follow MACE's: forces 100, and for the energy + forces + dipole models the dipole
at 100 (MACE's ``energy_forces_dipole`` multiplies ``--dipole_weight`` by 100); dipoles and
polarizabilities are per atom in both. A model whose training fails is reported and skipped.

    python benchmarks/tensorial_vs_mace.py --data runs/xtb_tensorial --n-train 200 --epochs 10
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import ase.io
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mace_tensorial  # noqa: E402
from tensorpot.data.readers import read_configurations  # noqa: E402
from tensorpot.data.statistics import resolve_e0s  # noqa: E402
from tensorpot.evaluation.metrics import format_error_table  # noqa: E402
from tensorpot.training import train  # noqa: E402

COLUMNS = (
    "energy_rmse_per_atom", "forces_rmse", "dipole_mae", "dipole_rmse", "dipole_norm_rmse",
    "polarizability_mae", "polarizability_rmse",
)  # fmt: skip
UNITS = {"dipole": "e·Å", "polarizability": "Å³"}


def split_files(data: Path, out: Path, n_train: int, n_valid: int, seed: int) -> tuple[Path, Path]:
    """``n_train`` and ``n_valid`` disjoint random frames of ``data/train.xyz``, every key kept."""
    frames = ase.io.read(data / "train.xyz", index=":")
    order = np.random.default_rng(seed).permutation(len(frames))
    train_file, valid_file = out / "train.xyz", out / "valid.xyz"
    ase.io.write(train_file, [frames[k] for k in sorted(order[:n_train])], format="extxyz")
    chosen = sorted(order[n_train : n_train + n_valid])
    ase.io.write(valid_file, [frames[k] for k in chosen], format="extxyz")
    return train_file, valid_file


def train_ictp(name, outputs, files, e0s, args, out: Path) -> dict:
    config = {
        "train_file": str(files["train"]), "valid_file": str(files["valid"]),
        "test_files": [str(files["test_seen"]), str(files["test_unseen"])],
        "E0s": {int(z): e for z, e in e0s.items()}, "batch_size": args.batch_size,
        "valid_batch_size": 10, "max_num_epochs": args.epochs, "lr": args.lr, "seed": args.seed,
        "energy_weight": 1.0, "forces_weight": 100.0,
        "dipole_weight": 100.0 if "energy" in outputs else 1.0, "polarizability_weight": 1.0,
        "output_dir": str(out / name), "name": name, "threads": args.threads,
        "progress_bar": False, "log_to_stdout": False, "units": UNITS,
        "model": {"num_channels": args.channels, "max_L": args.max_L, "max_ell": 3,
                  "correlation": args.correlation, "num_interactions": 2, "r_max": args.r_max,
                  "outputs": outputs, "dtype": "float64"},
    }  # fmt: skip
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    with open(result.history_path, newline="", encoding="utf-8") as handle:
        epochs = [float(row["time_s"]) for row in csv.DictReader(handle)]
    tables = {
        "valid": result.error_tables["valid"],
        "test_seen": result.error_tables["test_seen"],
        "test_unseen": result.error_tables["test_unseen"],
    }
    return {"fit_seconds": sum(epochs), "wall_seconds": wall, "tables": tables}


def train_mace(kind, files, e0s, args, out: Path) -> dict:
    size = {"num_channels": args.channels, "max_L": args.max_L, "correlation": args.correlation,
            "r_max": args.r_max, "max_ell": 3, "num_interactions": 2}  # fmt: skip
    weights = {"energy_weight": 1.0, "forces_weight": 100.0, "dipole_weight": 1.0}
    if kind == "AtomicDielectricMACE":
        weights = {"dipole_weight": 1.0, "polarizability_weight": 1.0}
    run = mace_tensorial.train_mace(
        kind, files["train"], None, args.epochs, out / kind, size=size, seed=args.seed,
        threads=args.threads, valid_file=files["valid"], e0s=e0s, batch_size=args.batch_size,
        lr=args.lr, weights=weights,
    )  # fmt: skip
    tables = mace_tensorial.evaluate_mace(
        run["model_path"],
        {"valid": files["valid"], "test_seen": files["test_seen"],
         "test_unseen": files["test_unseen"]},
        threads=args.threads,
    )  # fmt: skip
    return {"fit_seconds": run["fit_seconds"], "wall_seconds": run["train_seconds"],
            "tables": tables}  # fmt: skip


def report(results: dict) -> str:
    """The error tables of every model, and the training times."""
    lines = []
    for dataset in ("valid", "test_seen", "test_unseen"):
        rows = {
            name: {k: v for k, v in r["tables"][dataset].items() if k in COLUMNS}
            for name, r in results.items()
            if "tables" in r
        }
        lines += [f"\n{dataset}:\n", format_error_table(rows, UNITS)]
    lines.append(
        "\n| model | training (s, epochs with validation) | whole run (s) |\n|---|---|---|"
    )
    for name, r in results.items():
        if "tables" in r:
            lines.append(f"| {name} | {r['fit_seconds']:.0f} | {r['wall_seconds']:.0f} |")
        else:
            lines.append(f"| {name} | failed: {r['error']} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("runs/xtb_tensorial"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-valid", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="run only these models")
    args = parser.parse_args()
    out = args.out or Path("runs") / time.strftime("tensorial-vs-mace-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=False)
    train_file, valid_file = split_files(args.data, out, args.n_train, args.n_valid, args.seed)
    files = {
        "train": train_file, "valid": valid_file,
        "test_seen": args.data / "test_seen.xyz", "test_unseen": args.data / "test_unseen.xyz",
    }  # fmt: skip
    configs = read_configurations(train_file, require_forces=False)
    elements = sorted({int(z) for c in configs for z in c.numbers})
    e0s = resolve_e0s("average", configs, elements)
    print(
        f"{platform.machine()}, {args.threads} threads; {out}; {args.n_train} training and "
        f"{args.n_valid} validation frames, {args.epochs} epochs, C={args.channels}, "
        f"L={args.max_L}, nu={args.correlation}; E0s {e0s}",
        flush=True,
    )
    runs = {
        "ICTP E+F+mu+alpha": lambda: train_ictp(
            "ictp_efma", ["energy", "dipole", "polarizability"], files, e0s, args, out
        ),  # fmt: skip
        "ICTP mu+alpha": lambda: train_ictp(
            "ictp_ma", ["dipole", "polarizability"], files, e0s, args, out
        ),  # fmt: skip
        "MACE AtomicDielectricMACE": lambda: train_mace(
            "AtomicDielectricMACE", files, e0s, args, out
        ),  # fmt: skip
        "MACE EnergyDipolesMACE": lambda: train_mace("EnergyDipolesMACE", files, e0s, args, out),
    }
    results = {}
    for name, run in runs.items():
        if args.only and not any(o in name for o in args.only):
            continue
        start = time.perf_counter()
        try:
            results[name] = run()
        except Exception as err:  # report the others
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    text = report(results)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
