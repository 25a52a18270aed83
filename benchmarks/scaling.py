"""The ICTP paper's scaling study (its Fig. 2 / Table A1) against MACE and FlashCart, here.

3BPA, batch 10, 8 channels, l_max = L (hidden and edge ranks), ICTP with the full product basis,
MACE with its intermediate ranks capped at l_max (mace-torch's default), FlashCart with
path-resolved products (:class:`tensorpot.benchmarking.adapters.FlashCart`), float64, energy +
forces. Every grid point runs in its own process, its address space capped at ``--memory-gib``
(so a model that cannot be built or runs out of memory skips that point, and says so, as does a
peer that is not installed or whose first call takes over ``--max-call-seconds``; where the
point's process dies, each model is timed alone): the models are timed there, interleaved,
median of the repeats (at least ``--repeats``, more where the slowest model's calls take under
``--min-seconds`` in all); peak memory is measured for each model in a further fresh process.
Prints a Markdown table with the ratios tensorpot / peer and writes the figure (time and memory
against L and nu).

    python benchmarks/scaling.py --max-L 4 --max-correlation 6 --figure docs/benchmarks/scaling.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tensorpot.benchmarking import harness
from tensorpot.benchmarking.adapters import Size, peers

DATA = Path(__file__).resolve().parents[1] / "data" / "3bpa" / "test_300K_first200.xyz"
ICTP = "tensorpot ICTP"
MODELS = [adapter.name for adapter in peers(Size())]  # tensorpot first


def run_point(L: int, nu: int, frames: tuple, args) -> dict:
    """The models' times (one child process, interleaved) and peak memories (a child each) at
    one grid point: ``{"times": {name: s}, "memory": {name: MiB}, "notes": {name: why}}``."""
    workload = harness.Workload("3bpa", frames)
    cases = harness.cases_of(peers(Size(args.channels, L, L, nu)), [workload])
    child = {"threads": args.threads, "timeout": args.timeout}
    capped = {**child, "address_space_gib": args.memory_gib}
    results = harness.time_cases(
        cases, args.repeats, 1, args.min_seconds, args.max_call_seconds, child=capped
    )
    point = {"times": {}, "memory": {}, "notes": {}}
    for r in results:
        if r.seconds is None:
            point["notes"][r.case.name] = r.note
            continue
        point["times"][r.case.name] = r.seconds
        memory = harness.peak_memory(r.case, 3, **child)
        point["memory"][r.case.name] = memory.get("peak", float("nan")) - memory.get("before", 0)
    return point


def table(results: dict, batch: int) -> str:
    """One row per point: each model's ms per structure and MiB, tensorpot / peer ratios."""
    present = [m for m in MODELS if any(m in r["times"] for r in results.values())]
    peers_ = [m for m in present if m != ICTP]
    head = ["L", "nu"] + [f"{m} ms/structure" for m in present]
    head += [f"time ICTP/{m}" for m in peers_]
    head += [f"{m} MiB" for m in present]
    head += [f"memory ICTP/{m}" for m in peers_] + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (L, nu), r in sorted(results.items()):
        t, m = r["times"], r["memory"]
        row = [str(L), str(nu)]
        row += [f"{1e3 * t[k] / batch:.2f}" if k in t else "-" for k in present]
        row += [f"{t[ICTP] / t[k]:.2f}" if {ICTP, k} <= set(t) else "-" for k in peers_]
        row += [f"{m[k]:.0f}" if k in m else "-" for k in present]
        row += [
            f"{m[ICTP] / m[k]:.2f}" if {ICTP, k} <= set(m) and m[k] > 0 else "-" for k in peers_
        ]
        row.append("; ".join(f"{k}: {v}" for k, v in r["notes"].items()))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def figure(results: dict, path: Path, batch: int, fixed_nu: int, fixed_L: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for col, (axis_name, fixed, select) in enumerate(
        [
            ("L", f"nu = {fixed_nu}", lambda k: k[1] == fixed_nu),
            ("nu", f"L = {fixed_L}", lambda k: k[0] == fixed_L),
        ]  # fmt: skip
    ):
        keys = sorted(k for k in results if select(k))
        for model in MODELS:
            xs = [k[col] for k in keys if model in results[k]["times"]]
            ts = [
                1e3 * results[k]["times"][model] / batch
                for k in keys
                if model in results[k]["times"]
            ]
            ms = [
                results[k]["memory"].get(model, float("nan"))
                for k in keys
                if model in results[k]["times"]
            ]
            axes[0, col].plot(xs, ts, "o-", label=model)
            axes[1, col].plot(xs, ms, "o-", label=model)
        axes[0, col].set(
            title=f"time against {axis_name} ({fixed})", ylabel="ms / structure", yscale="log"
        )
        axes[1, col].set(xlabel=axis_name, ylabel="peak memory (MiB)", yscale="log")
        axes[0, col].legend()
    fig.suptitle(f"3BPA, batch {batch}, 8 channels, float64, energy + forces")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-L", type=int, default=0)
    parser.add_argument("--max-L", type=int, default=4)
    parser.add_argument("--max-correlation", type=int, default=6)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="more repeats where calls are cheap: the slower model's calls take this long in all",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-call-seconds",
        type=float,
        default=60.0,
        help="a model whose first call at a point takes longer is not timed there (said so)",
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per grid point")
    parser.add_argument("--memory-gib", type=float, default=16, help="address-space cap per point")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = harness.load_frames(DATA, args.batch)
    results = {}
    for L in range(args.min_L, args.max_L + 1):
        for nu in range(1, args.max_correlation + 1):
            results[(L, nu)] = run_point(L, nu, frames, args)
            print(f"L={L} nu={nu}: {results[(L, nu)]}", file=sys.stderr, flush=True)
    text = table(results, args.batch)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    if args.figure:
        figure(results, args.figure, args.batch, min(3, args.max_correlation), min(2, args.max_L))


if __name__ == "__main__":
    main()
