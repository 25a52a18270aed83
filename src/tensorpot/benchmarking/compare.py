"""tensorpot against MACE and FlashCart of the same size: the measurement of ``tensorpot
bench`` (and of ``benchmarks/run.py --suite peers``)."""

from __future__ import annotations

from collections.abc import Sequence

from tensorpot.benchmarking import harness
from tensorpot.benchmarking.adapters import FlashCart, Mace, Size, TensorPot, peers


def compare_with_peers(
    workload: harness.Workload,
    size: Size,
    repeats: int = 15,
    threads: int = 2,
    models: Sequence[TensorPot] = (),
) -> str:
    """Time (interleaved, median) and peak memory (fresh processes, three calls each) of
    tensorpot's ``models`` (default: ICTP of ``size``) and of MACE and FlashCart of ``size``
    on ``workload``; the Markdown tables with the ratios tensorpot / peer.

    All models are untrained (speed does not depend on the weights). A peer whose package is
    not installed is skipped, and said so.
    """
    adapters = [*models, Mace(size), FlashCart(size)] if models else peers(size)
    ours = [a.name for a in adapters if isinstance(a, TensorPot)]
    theirs = [a.name for a in adapters if not isinstance(a, TensorPot)]
    results = harness.measure(
        harness.cases_of(adapters, [workload]),
        repeats,
        warmup=1,
        memory=lambda case: True,
        threads=threads,
    )
    head = (
        f"{size.describe()}, 2 interactions, r_max 5 Å, untrained, parameters frozen; median "
        f"of {repeats} interleaved calls; {harness.machine_line(threads)}"
    )
    ratios = [(a, b) for a in ours for b in theirs]
    return head + "\n\n" + harness.report(results, ratios)
