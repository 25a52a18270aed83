"""Peak memory and throughput of training streamed from a store against training in memory.

For every data-set size N (default 10^3 .. 10^6) the script

1. generates N small periodic cells (4-atom fcc Cu cells, one atom Ni in half of them, strained
   by up to 2 % and rattled by 0.05 Å) labelled by a cheap labeller: a Lennard-Jones potential
   (ε = 0.4 eV, σ = 2.3 Å, shifted to zero energy at its 5 Å cutoff), evaluated in numpy for
   many cells at once (energy, forces, stress), and writes them as extended XYZ;
2. runs ``tensorpot preprocess`` into an LMDB store (``--root``, never inside the repository);
3. trains a tiny ICTP model for ``--steps`` optimiser steps (batch ``--batch``), streamed
   from the store with ``--workers`` loader processes, and, for N up to ``--max-memory-size``,
   in memory from the extended-XYZ file; each run is a fresh process;
4. reports the peak memory of each run, sampled every 50 ms (:func:`_tree_memory`): the
   anonymous memory of the training process and its loader workers, each page once, and an
   RSS-based figure that also counts the store's file pages LMDB maps; and the throughput
   (structures per second over the steps after the first 20, which include start-up).

``--nproc 2`` runs the streamed training under ``torchrun --nproc_per_node=2`` (gloo), the
global batch ``--batch`` shared between the processes, for the 2-process throughput.

    python benchmarks/streaming_memory.py --root /tmp/streaming --sizes 1000 10000 100000 1000000
    python benchmarks/streaming_memory.py --root /tmp/streaming --sizes 100000 --nproc 2 \
        --no-memory-run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

EPSILON, SIGMA, CUTOFF = 0.4, 2.3, 5.0
MODEL = {
    "model": "ictp", "num_channels": 8, "max_L": 1, "max_ell": 1, "correlation": 2,
    "num_interactions": 1, "radial_MLP": [16], "r_max": 4.0, "dtype": "float32",
}  # fmt: skip


def _lennard_jones(positions: np.ndarray, cells: np.ndarray) -> tuple:
    """Energy [B], forces [B, n, 3], stress [B, 3, 3] (eV/Å³) of B periodic cells of n atoms."""
    shifts = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    images = np.einsum("sk,bkj->bsj", shifts.astype(float), cells)  # [B, S, 3]
    diff = positions[:, None, :, None, :] - positions[:, :, None, None, :]  # [B, i, j, 1, 3]
    vectors = diff + images[:, None, None, :, :]  # r_j + shift - r_i: [B, i, j, S, 3]
    r = np.linalg.norm(vectors, axis=-1)
    inside = (r < CUTOFF) & (r > 1e-8)
    r_safe = np.where(inside, r, 1.0)
    s6 = (SIGMA / r_safe) ** 6
    shift = 4 * EPSILON * ((SIGMA / CUTOFF) ** 12 - (SIGMA / CUTOFF) ** 6)
    pair = np.where(inside, 4 * EPSILON * (s6**2 - s6) - shift, 0.0)
    energy = 0.5 * pair.sum(axis=(1, 2, 3))
    dudr = np.where(inside, 4 * EPSILON * (-12 * s6**2 + 6 * s6) / r_safe, 0.0)
    pull = (dudr / r_safe)[..., None] * vectors  # dU/dr * unit vector, on atom j from i
    forces = pull.sum(axis=(2, 3))  # F_i = sum_j dU/dr (r_ij / r)
    volume = np.abs(np.linalg.det(cells))
    virial = -0.5 * np.einsum("bijsk,bijsl->bkl", vectors, pull)
    return energy, forces, -virial / volume[:, None, None]


def _frames(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` labelled cells as extended-XYZ text."""
    base = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * 3.61
    cells = 3.61 * np.stack([np.diag(1 + rng.uniform(-0.02, 0.02, 3)) for _ in range(count)])
    positions = base[None] @ (cells / 3.61) + rng.normal(0, 0.05, (count, 4, 3))
    energy, forces, stress = _lennard_jones(positions, cells)
    nickel = rng.random(count) < 0.5
    out = []
    for b in range(count):
        lattice = " ".join(f"{v:.10f}" for v in cells[b].ravel())
        voigt = " ".join(f"{v:.10e}" for v in stress[b].ravel())
        lines = ["4", f'Lattice="{lattice}" Properties=species:S:1:pos:R:3:forces:R:3 '
                 f'energy={energy[b]:.10f} stress="{voigt}" pbc="T T T"']  # fmt: skip
        for i in range(4):
            symbol = "Ni" if (i == 0 and nickel[b]) else "Cu"
            p, f = positions[b, i], forces[b, i]
            lines.append(f"{symbol} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f} "
                         f"{f[0]:.10e} {f[1]:.10e} {f[2]:.10e}")  # fmt: skip
        out.append("\n".join(lines) + "\n")
    return out


def generate(path: Path, size: int, seed: int = 0) -> Path:
    """Write ``size`` labelled cells to ``path`` (kept if it is there already)."""
    if path.is_file():
        return path
    rng = np.random.default_rng(seed)
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="ascii") as handle:
        for start in range(0, size, 2000):
            handle.writelines(_frames(min(2000, size - start), rng))
    partial.rename(path)
    return path


def run_config(train_file: Path, out: Path, args: argparse.Namespace) -> dict:
    """The run config of the benchmark's training runs."""
    return {
        "train_file": str(train_file), "valid_fraction": 0.01, "E0s": "average",
        "batch_size": args.batch, "valid_batch_size": args.batch, "max_num_epochs": 1,
        "output_dir": str(out), "name": "bench", "progress_bar": False, "log_to_stdout": False,
        "num_workers": args.workers, "stress_weight": 0.0, "model": MODEL,
    }  # fmt: skip


class _Steps:
    """A progress bar that times the steps and stops the epoch after ``limit`` steps."""

    def __init__(self, limit: int):
        self.limit, self.times = limit, []

    def update(self, count: int) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= self.limit:
            raise _Done

    def set_postfix(self, **_: object) -> None:
        pass


class _Done(Exception):
    pass


def child(config_path: Path, steps: int, result: Path) -> None:
    """One training run (in this process; under torchrun, in each): set-up, ``steps`` steps."""
    import torch

    from tensorpot.config import parse_run_config
    from tensorpot.devices import resolve_device
    from tensorpot.training import trainer
    from tensorpot.training.epoch import train_epoch

    config = parse_run_config(json.loads(config_path.read_text()))
    with trainer.join(resolve_device(config.device)) as world:
        tic = time.perf_counter()
        data, state = trainer._set_up(config, None, world)
        set_up = time.perf_counter() - tic
        bar = _Steps(steps)
        try:
            for epoch in range(1, steps + 1):  # until ``steps`` steps are done
                train_epoch(state, data.train, config, epoch, bar, world)
        except _Done:
            pass
        world.barrier()
        if world.is_main:
            times = np.array(bar.times)
            skip = min(20, len(times) // 2)
            rate = (len(times) - 1 - skip) / (times[-1] - times[skip]) if len(times) > 2 else 0
            result.write_text(json.dumps({
                "set_up_s": set_up, "steps": len(times),
                "structures_per_s": rate * config.batch_size,
                "threads": torch.get_num_threads(), "world_size": world.size,
            }))  # fmt: skip


def _fields(path: str, names: tuple[str, ...]) -> int:
    """The sum of the ``names`` fields (kB) of a /proc file, in bytes (0 if it is gone)."""
    total = 0
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(names):
                    total += int(line.split()[1]) * 1024
    except OSError:
        return 0
    return total


def _tree_memory(pid: int) -> dict[str, int]:
    """The memory of process ``pid`` and its descendants (loader workers, torchrun's ranks).

    ``anon``: the anonymous memory of ``pid`` (``RssAnon``) plus what every descendant wrote
    itself (``Private_Dirty``): the memory the run allocates, each page once. ``rss``: the RSS
    of ``pid`` plus the private pages of the descendants, which also counts the pages of the
    store's file that LMDB maps while reading (page cache, which the kernel reclaims; a pass
    over the store maps all of it for a while)."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {"anon": 0, "rss": 0}
    anon = _fields(f"/proc/{pid}/status", ("RssAnon:",))
    rss = _fields(f"/proc/{pid}/status", ("VmRSS:",))
    for child in children:
        rollup = f"/proc/{child.pid}/smaps_rollup"
        anon += _fields(rollup, ("Private_Dirty:",))
        rss += _fields(rollup, ("Private_Clean:", "Private_Dirty:"))
    return {"anon": anon, "rss": rss}


def measure(command: list[str], env: dict) -> dict:
    """Run ``command``; the peaks of its memory with its workers' and of its own RSS (sampled
    every 50 ms), and its wall time."""
    process = subprocess.Popen(command, env=env)
    peak = {"anon": 0, "rss": 0}

    def sample() -> None:
        while process.poll() is None:
            for key, value in _tree_memory(process.pid).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.05)

    thread = threading.Thread(target=sample)
    thread.start()
    tic = time.perf_counter()
    code = process.wait()
    thread.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    return {"peak_anon_MiB": peak["anon"] / 2**20, "peak_rss_MiB": peak["rss"] / 2**20,
            "wall_s": time.perf_counter() - tic}  # fmt: skip


def one_run(kind: str, train_file: Path, size: int, args: argparse.Namespace) -> dict:
    folder = args.root / f"{kind}_{size}_np{args.nproc}"
    folder.mkdir(parents=True, exist_ok=True)
    config_path, result = folder / "config.json", folder / "result.json"
    config_path.write_text(json.dumps(run_config(train_file, folder / "run", args)))
    script = [str(Path(__file__).resolve()), "--child", str(config_path), "--steps",
              str(args.steps), "--result", str(result)]  # fmt: skip
    if args.nproc > 1:
        command = ["torchrun", f"--nproc_per_node={args.nproc}", *script]
    else:
        command = [sys.executable, *script]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    row = measure(command, env)
    row.update(json.loads(result.read_text()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/tensorpot-streaming"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--nproc", type=int, default=1, help="processes of the streamed run")
    parser.add_argument("--max-memory-size", type=int, default=100000,
                        help="largest size also trained in memory")  # fmt: skip
    parser.add_argument("--no-memory-run", action="store_true", help="streamed runs only")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.steps, args.result)
        return
    repo = Path(__file__).resolve().parents[1]
    if args.root.resolve().is_relative_to(repo):
        raise SystemExit("--root must lie outside the repository")
    args.root.mkdir(parents=True, exist_ok=True)
    from tensorpot.data.store import read_meta
    from tensorpot.training.preprocess import preprocess

    rows = []
    for size in args.sizes:
        tic = time.perf_counter()
        data = generate(args.root / f"cells_{size}.xyz", size)
        generated = time.perf_counter() - tic
        store = args.root / f"cells_{size}.lmdb"
        tic = time.perf_counter()
        if not store.exists() or not read_meta(store).get("complete"):
            preprocess(run_config(data, args.root / "unused", args), store)  # new or resumed
        converted = time.perf_counter() - tic
        print(f"N={size}: data {generated:.0f} s, preprocess {converted:.0f} s, store "
              f"{store.stat().st_size / 2**20:.0f} MiB", flush=True)  # fmt: skip
        row = {"size": size, "streamed": one_run("streamed", store, size, args)}
        print(json.dumps(row), flush=True)
        if not args.no_memory_run and size <= args.max_memory_size and args.nproc == 1:
            row["memory"] = one_run("memory", data, size, args)
            print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| N | streamed: peak anonymous memory (MiB) | streamed: peak RSS (MiB) | streamed "
          "structures/s | in memory: peak anonymous memory (MiB) | in memory: peak RSS (MiB) | "
          "in memory structures/s |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for row in rows:
        cells = [str(row["size"])]
        for kind in ("streamed", "memory"):
            run = row.get(kind)
            keys = ("peak_anon_MiB", "peak_rss_MiB", "structures_per_s")
            cells += [f"{run[k]:.0f}" for k in keys] if run else ["-"] * 3
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
