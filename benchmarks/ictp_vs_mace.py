"""ICTP against MACE of the same size on 3BPA: time and peak memory of energy + forces.

Both models: 2 interactions, r_max 5 Å, ``channels`` channels, hidden ranks <= max_L, edge
ranks <= max_ell, correlation nu, float64, untrained (speed does not depend on the weights).
Timing is interleaved in one process (median over repeats); peak memory is measured for each
model in its own fresh process. Prints a Markdown table with the ratios tensorpot / MACE.

    python benchmarks/ictp_vs_mace.py --channels 8 --max-L 2 --correlation 3 --batch 10
"""

from __future__ import annotations

import argparse
import platform

import torch

import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = common.load_frames(args.batch)
    size = ["--channels", str(args.channels), "--max-L", str(args.max_L), "--correlation",
            str(args.correlation), "--max-ell", str(args.max_ell), "--batch", str(args.batch),
            "--threads", str(args.threads)]  # fmt: skip
    ictp = common.ictp_model(args.channels, args.max_L, args.correlation, args.max_ell)
    calls = {"tensorpot ICTP": common.ictp_call(ictp, frames)}
    memory = {"tensorpot ICTP": common.peak_memory_mib(["ictp", *size])}
    if common.mace_available():
        mace = common.build_mace(args.channels, args.max_L, args.correlation, args.max_ell)
        calls["MACE"] = common.mace_call(mace, frames)
        memory["MACE"] = common.peak_memory_mib(["mace", *size])
    else:
        print("mace-torch is not installed: pip install -c constraints.txt -e '.[bench]'")
    times = common.time_interleaved(calls, args.repeats)
    atoms = sum(len(a) for a in frames)
    cpu = platform.processor() or platform.machine()
    print(
        f"\n3BPA, batch {args.batch} ({atoms} atoms), C={args.channels}, max_L={args.max_L}, "
        f"max_ell={args.max_ell}, nu={args.correlation}, float64, {args.threads} threads, "
        f"energy + forces; {cpu}, torch {torch.__version__}\n"
    )
    print("| model | ms / structure | peak memory (MiB) |")
    print("|---|---|---|")
    for name in calls:
        print(f"| {name} | {1e3 * times[name] / args.batch:.2f} | {memory[name]:.1f} |")
    if "MACE" in calls:
        ratio_t = times["tensorpot ICTP"] / times["MACE"]
        ratio_m = memory["tensorpot ICTP"] / max(memory["MACE"], 1e-9)
        print(f"| ratio tensorpot / MACE | {ratio_t:.2f} | {ratio_m:.2f} |")


if __name__ == "__main__":
    main()
