"""The exported forms of a model (``tensorpot export``) against the Python model: time of one
call giving energy, forces and virials, float64, untrained models (speed does not depend on the
weights), parameters frozen as the ASE calculator holds them.

Structures: the first 3BPA molecule (27 atoms) and a periodic cell of 64 H, C, N and O atoms
(random positions at least 1 Å apart in an 8.6 Å cube, 0.1 atoms per Å³: about 50 neighbours
per atom within 5 Å). Per model and structure, four calls interleaved ``--repeats`` times
(medians reported): the Python model with its CPU kernel (how ``tensorpot eval``, ``md`` and
the calculator run it), the Python model told to run the PyTorch operations
(:func:`tensorpot.nn.cpu_kernel.choose`), the exported program that calls the kernel's
operators (``tensorpot export``; its library loaded, as in this process) and the portable one
(``tensorpot export --pytorch-ops``), each loaded from its file
(``torch.export.load(...).module()``). A model without a part the kernel runs (ViSNet, QuinNet)
exports the same program both ways. Neighbour lists are built once, outside the timings. Also
reports the largest relative difference of each exported program's outputs from the model's
and the time each export took.

    python benchmarks/export_speed.py --repeats 20 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

import tensorpot
from tensorpot.benchmarking.harness import load_frames
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.models.export import engine_inputs, save_exported
from tensorpot.nn import cpu_kernel

E0S = {1: -13.587, 6: -1029.489, 7: -1484.981, 8: -2041.982}
SHARED = {"r_max": 5.0, "atomic_numbers": [1, 6, 7, 8], "E0s": E0S, "dtype": "float64"}
MODELS = {
    "ICTP (C 16, L 2, nu 3)": {"model": "ictp", "num_channels": 16, "max_L": 2,
                                "correlation": 3, "avg_num_neighbors": 15.0},
    "ViSNet (F 64, 3 layers)": {"model": "visnet", "num_channels": 64, "num_interactions": 3},
    "FreeCG (F 64, 3 layers)": {"model": "freecg", "num_channels": 64, "num_interactions": 3},
    "QuinNet (F 64, 3 layers)": {"model": "quinnet", "num_channels": 64, "num_interactions": 3},
}  # fmt: skip


def periodic_cell(num_atoms: int = 64, side: float = 8.6, seed: int = 0) -> Atoms:
    """Random H, C, N, O atoms at least 1 Å apart (minimum image) in a cube."""
    rng = np.random.default_rng(seed)
    positions: list[np.ndarray] = []
    while len(positions) < num_atoms:
        p = rng.uniform(0.0, side, 3)
        d = np.asarray(positions) - p if positions else np.zeros((0, 3))
        d -= side * np.round(d / side)
        if len(d) == 0 or np.linalg.norm(d, axis=1).min() >= 1.0:
            positions.append(p)
    numbers = rng.choice([1, 6, 7, 8], size=num_atoms)
    return Atoms(numbers=numbers, positions=positions, cell=[side] * 3, pbc=True)


def median_ms(calls: dict, repeats: int) -> dict[str, float]:
    """Median milliseconds of each call, the calls interleaved (one of each per round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():  # warm-up
        call()
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def python_call(model, batch, kernel: bool):
    def call():
        cpu_kernel.choose(model, kernel)  # per call: the calls are interleaved
        return model(batch, compute_forces=True, compute_stress=True)

    return call


def relative_difference(model, batch, program, inputs) -> float:
    want = model(batch, compute_forces=True, compute_stress=True)
    got = program(*inputs)
    worst = 0.0
    for name, value in [("energy", want.energy[0]), ("forces", want.forces),
                        ("virials", want.virials[0])]:  # fmt: skip
        value = value.detach()
        worst = max(worst, float((got[name] - value).abs().max() / value.abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", help="only the models whose label starts so")
    parser.add_argument("--cell-atoms", type=int, default=64, help="atoms of the periodic cell")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    molecule = load_frames(Path(__file__).parents[1] / "data/3bpa/test_300K_first200.xyz", 1)[0]
    side = 8.6 * (args.cell_atoms / 64) ** (1 / 3)  # the same density
    structures = {
        "3BPA molecule (27 atoms)": molecule,
        f"periodic cell ({args.cell_atoms} atoms)": periodic_cell(args.cell_atoms, side),
    }
    print(f"torch {torch.__version__}, {args.threads} threads, float64, medians of "
          f"{args.repeats} interleaved calls (ms); energy + forces + virials\n")  # fmt: skip
    print(
        "| model | structure | edges | Python, kernel | Python, PyTorch ops | "
        "exported, operators | exported, PyTorch ops | operators / Python, kernel | "
        "PyTorch ops / Python, kernel | max rel. difference (operators; PyTorch ops) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    with tempfile.TemporaryDirectory() as folder:
        for label, config in MODELS.items():
            if args.models and not any(label.startswith(m) for m in args.models):
                continue
            model = tensorpot.build_model({**SHARED, **config}).eval()
            for p in model.parameters():
                p.requires_grad_(False)
            programs = {}
            for form, kernel in (("operators", None), ("pytorch", False)):
                start = time.perf_counter()
                path = save_exported(model, Path(folder) / f"{config['model']}_{form}.pt2",
                                     kernel=kernel)  # fmt: skip
                notes.append(f"{label}, {form}: export {time.perf_counter() - start:.1f} s")
                programs[form] = torch.export.load(path).module()
            for name, atoms in structures.items():
                batch = collate([atoms_to_graph(atoms, model.r_max)])
                inputs = engine_inputs(atoms_to_graph(atoms, model.r_max))
                ms = median_ms(
                    {
                        "kernel": python_call(model, batch, kernel=True),
                        "ops": python_call(model, batch, kernel=False),
                        **{f: functools.partial(p, *inputs) for f, p in programs.items()},
                    },
                    args.repeats,
                )
                cpu_kernel.choose(model, True)
                diff = [relative_difference(model, batch, p, inputs) for p in programs.values()]
                print(f"| {label} | {name} | {inputs[3].shape[1]} | {ms['kernel']:.2f} | "
                      f"{ms['ops']:.2f} | {ms['operators']:.2f} | {ms['pytorch']:.2f} | "
                      f"{ms['operators'] / ms['kernel']:.2f} | "
                      f"{ms['pytorch'] / ms['kernel']:.2f} | "
                      f"{diff[0]:.1e}; {diff[1]:.1e} |")  # fmt: skip
    print()
    print("; ".join(notes))


if __name__ == "__main__":
    main()
