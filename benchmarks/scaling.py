"""The ICTP paper's scaling study (its Fig. 2 / Table A1) against MACE and FlashCart, here.

3BPA, batch 10, 8 channels, l_max = L (hidden and edge ranks), ICTP with the full product basis,
MACE with its intermediate ranks capped at l_max (mace-torch's default), FlashCart with
path-resolved products (:func:`tensorpot.benchmarking.peers.build_flashcart`), float64, energy +
forces. Every grid point runs in its own process (so a model that cannot be built or runs out of
memory skips that point, and says so, as does a peer that is not installed or whose first call
takes over ``--max-call-seconds``): the models are timed there, interleaved, median of the
repeats (at least ``--repeats``, more where the slowest model's calls take under
``--min-seconds`` in all); peak memory is measured for each model in a further fresh process.
Prints a Markdown table with the ratios tensorpot / peer and writes the figure (time and memory
against L and nu).

    python benchmarks/scaling.py --max-L 4 --max-correlation 6 --figure docs/benchmarks/scaling.png
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import common

#: (key, label, available, build, call) of every model, tensorpot first
MODELS = [("ictp", "tensorpot ICTP", lambda: True, common.ictp_model, common.ictp_call)] + [
    (p.key, p.name, p.available, p.build, p.call) for p in common.PEERS
]


def child(L: int, nu: int, args) -> None:
    """Time the models at one grid point and print one JSON line."""
    resource.setrlimit(resource.RLIMIT_AS, (args.memory_gib << 30, args.memory_gib << 30))
    torch.set_num_threads(args.threads)
    frames = common.load_frames(args.batch)
    calls, notes = {}, {}
    for name, _, available, build, call in MODELS:
        if not available():
            notes[name] = "not installed"
            continue
        try:
            fn = call(build(args.channels, L, nu, L), frames)
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
            if seconds > args.max_call_seconds:
                notes[name] = f"first call {seconds:.0f} s (over --max-call-seconds), not timed"
                continue
            calls[name] = fn
        except Exception as err:  # a model that cannot be built or run here is skipped, and said so
            notes[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
    times = (
        common.time_interleaved(calls, args.repeats, warmup=1, min_seconds=args.min_seconds)
        if calls
        else {}
    )
    print(json.dumps({"times": times, "notes": notes}))


def run_point(L: int, nu: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", str(L), str(nu)] + _shared(args)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"times": {}, "notes": {"all": f"over {args.timeout} s"}, "memory": {}}
    except (IndexError, json.JSONDecodeError):
        return {"times": {}, "notes": {"all": "crashed (out of memory?)"}, "memory": {}}
    size = ["--channels", str(args.channels), "--max-L", str(L), "--correlation", str(nu),
            "--max-ell", str(L), "--batch", str(args.batch),
            "--threads", str(args.threads)]  # fmt: skip
    result["memory"] = {}
    for name in result["times"]:
        try:
            result["memory"][name] = common.peak_memory_mib([name, *size])
        except subprocess.CalledProcessError:
            result["memory"][name] = float("nan")
    return result


def _shared(args) -> list[str]:
    return ["--channels", str(args.channels), "--batch", str(args.batch),
            "--repeats", str(args.repeats), "--min-seconds", str(args.min_seconds),
            "--threads", str(args.threads), "--max-call-seconds", str(args.max_call_seconds),
            "--memory-gib", str(args.memory_gib)]  # fmt: skip


def table(results: dict, batch: int) -> str:
    """One row per point: each model's ms per structure and MiB, tensorpot / peer ratios."""
    present = [m for m in MODELS if any(m[0] in r["times"] for r in results.values())]
    peers_ = [m for m in present if m[0] != "ictp"]
    head = ["L", "nu"] + [f"{label} ms/structure" for _, label, *_ in present]
    head += [f"time ICTP/{label}" for _, label, *_ in peers_]
    head += [f"{label} MiB" for _, label, *_ in present]
    head += [f"memory ICTP/{label}" for _, label, *_ in peers_] + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (L, nu), r in sorted(results.items()):
        t, m = r["times"], r["memory"]
        row = [str(L), str(nu)]
        row += [f"{1e3 * t[k] / batch:.2f}" if k in t else "-" for k, *_ in present]
        row += [f"{t['ictp'] / t[k]:.2f}" if {"ictp", k} <= set(t) else "-" for k, *_ in peers_]
        row += [f"{m[k]:.0f}" if k in m else "-" for k, *_ in present]
        row += [
            f"{m['ictp'] / m[k]:.2f}" if {"ictp", k} <= set(m) and m[k] > 0 else "-"
            for k, *_ in peers_
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
        for model, label, *_ in MODELS:
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
            axes[0, col].plot(xs, ts, "o-", label=label)
            axes[1, col].plot(xs, ms, "o-", label=label)
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
    parser.add_argument("--child", nargs=2, type=int, metavar=("L", "NU"), help=argparse.SUPPRESS)
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
    parser.add_argument("--memory-gib", type=int, default=16, help="address-space limit per point")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    if args.child:
        child(*args.child, args)
        return
    results = {}
    for L in range(args.min_L, args.max_L + 1):
        for nu in range(1, args.max_correlation + 1):
            results[(L, nu)] = run_point(L, nu, args)
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
