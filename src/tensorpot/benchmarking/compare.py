"""ICTP against MACE and FlashCart of the same size on 3BPA: time and peak memory of energy +
forces."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from tensorpot.benchmarking import peers

ICTP = "tensorpot ICTP"


def compare_with_peers(
    channels: int = 8,
    max_L: int = 2,
    max_ell: int = 3,
    correlation: int = 3,
    batch: int = 10,
    repeats: int = 15,
    threads: int = 2,
    data: Path | None = None,
) -> str:
    """Time (interleaved, median) and peak memory (fresh processes) of each; a Markdown table.

    All models: 2 interactions, r_max 5 Å, ``channels`` channels, hidden ranks <= ``max_L``,
    edge ranks <= ``max_ell``, correlation ``correlation``, float64, untrained (speed does not
    depend on the weights). A peer is skipped, and said so, when its package is not installed.
    """
    torch.set_num_threads(threads)
    frames = peers.load_frames(batch, data)
    size = ["--channels", str(channels), "--max-L", str(max_L), "--correlation",
            str(correlation), "--max-ell", str(max_ell), "--batch", str(batch),
            "--threads", str(threads)]  # fmt: skip
    ictp = peers.ictp_model(channels, max_L, correlation, max_ell)
    calls = {ICTP: peers.ictp_call(ictp, frames)}
    memory = {ICTP: peers.peak_memory_mib(["ictp", *size])}
    lines = []
    for peer in peers.PEERS:
        if peer.available():
            calls[peer.name] = peer.call(peer.build(channels, max_L, correlation, max_ell), frames)
            memory[peer.name] = peers.peak_memory_mib([peer.key, *size])
        else:
            lines.append(
                f"{peer.name} skipped: {peer.package} is not installed "
                "(pip install -e '.[bench]').\n"
            )
    times = peers.time_interleaved(calls, repeats)
    atoms = sum(len(a) for a in frames)
    cpu = platform.processor() or platform.machine()
    lines += [
        f"3BPA, batch {batch} ({atoms} atoms), C={channels}, max_L={max_L}, max_ell={max_ell}, "
        f"nu={correlation}, float64, {threads} threads, energy + forces, median of {repeats} "
        f"interleaved; {cpu}, torch {torch.__version__}\n",
        "| model | ms / structure | peak memory (MiB) |",
        "|---|---|---|",
    ]
    for name in calls:
        lines.append(f"| {name} | {1e3 * times[name] / batch:.2f} | {memory[name]:.1f} |")
    for name in list(calls)[1:]:
        ratio_t = times[ICTP] / times[name]
        ratio_m = memory[ICTP] / max(memory[name], 1e-9)
        lines.append(f"| ratio tensorpot / {name} | {ratio_t:.2f} | {ratio_m:.2f} |")
    return "\n".join(lines)
