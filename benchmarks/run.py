"""The benchmark suites, each a table of cases (model adapters x workloads) for tensorpot's harness.

Prints Markdown tables (ms per structure, peak memory) with ratios.

A workload is a data set's first ``batch`` structures as one batch, in one dtype, energy +
forces (``--energy-only``: energy). Within a workload the models are timed interleaved (median
of ``--repeats`` calls after a warm-up); with ``isolate`` every workload is timed in its own
child process, killed above ``--memory-limit-gib`` (then each model is timed alone, and the
one that does not fit says so). Peak memory: each model in a fresh process under the same
watchdog, at the suite's memory workload.

- ``peers``: ICTP against MACE and FlashCart of the same size (``--channels``, ``--max-L``,
  ``--max-ell``, ``--correlation``), 3BPA, batch 10, float64: ``tensorpot bench``'s
  measurement, three calls in each memory process.
- ``freecg``: tensorpot FreeCG (released size, ``{"model": "freecg"}``) against tensorpot
  ViSNet of the same size and the official FreeCG (released config), aspirin (rMD17) and
  3BPA, batch 1 and 10, float32 and float64; memory at aspirin, batch 10, float64.
- ``visnet``: tensorpot ViSNet against PyG's ViSNet of the same size, float64.
- ``quinnet``: tensorpot QuinNet, QuinNet + FreeCG and FreeCG (released sizes) against the
  official QuinNet (released config), aspirin, batch 1 and 10, float32 and float64; memory at
  aspirin, batch 10, float64.
- ``ictp-freecg``: tensorpot ICTP of the same-budget presets (32 channels, max_L 2, max_ell 3,
  correlation 3) with and without FreeCG's Cartesian coupling of abstract edges (l_max 2, 3,
  and 3 with the pseudotensor paths), and the spherical FreeCG (released size), aspirin and
  3BPA, batch 1 and 10, float32 and float64; memory at aspirin, batch 10, float32.

    python benchmarks/run.py --suite freecg
    python benchmarks/run.py --suite peers --repeats 15
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from official import FreeCGOfficial, PyGViSNet, QuinNetOfficial
from tensorpot.benchmarking import harness
from tensorpot.benchmarking.adapters import TensorPot, add_size_arguments, peers, size_of

REPO = Path(__file__).resolve().parents[1]
DATA = {
    "3bpa": REPO / "data" / "3bpa" / "test_300K_first200.xyz",
    "aspirin": REPO.parent / "shared" / "data" / "rmd17" / "npz" / "rmd17_aspirin_test_01.npz",
}
FREECG, VISNET = "tensorpot FreeCG", "tensorpot ViSNet"
QUINNET, QUINNET_FREECG = "tensorpot QuinNet", "tensorpot QuinNet + FreeCG"
#: the ICTP of the same-budget presets (configs/ictp-rmd17-aspirin-50-20min.yaml)
ICTP_PRESET = {"model": "ictp", "r_max": 5.0, "num_channels": 32, "max_L": 2, "max_ell": 3,
               "correlation": 3, "product_basis": "sym", "num_interactions": 2}  # fmt: skip
ICTP, ICTP_CG2, ICTP_CG3 = "tensorpot ICTP", "ICTP + FreeCG l_max 2", "ICTP + FreeCG l_max 3"
ICTP_CG3_ODD = "ICTP + FreeCG l_max 3 odd"


@dataclass(frozen=True)
class Suite:
    """The models (made from the command line's arguments), the workload grid, the ratios
    ``(a, b)`` printed as ``a / b``, the memory workload ``(data, batch, dtype)`` (None: every
    workload) and the defaults of the run."""

    models: Callable[[argparse.Namespace], list]
    data: tuple[str, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    ratios: tuple[tuple[str, str], ...] = ()
    memory: tuple[str, int, str] | None = None
    memory_calls: int = 1
    isolate: bool = True
    repeats: int = 5


SUITES = {
    "peers": Suite(
        lambda args: peers(size_of(args)), ("3bpa",), (10,), ("float64",),
        (("tensorpot ICTP", "MACE"), ("tensorpot ICTP", "FlashCart")),
        memory_calls=3, isolate=False, repeats=15,
    ),
    "freecg": Suite(
        lambda args: [TensorPot({"model": "freecg"}, FREECG),
                      TensorPot({"model": "visnet"}, VISNET), FreeCGOfficial()],
        ("aspirin", "3bpa"), (1, 10), ("float32", "float64"),
        ((FREECG, VISNET), (FREECG, "official FreeCG")), memory=("aspirin", 10, "float64"),
    ),
    "visnet": Suite(
        lambda args: [TensorPot({"model": "visnet"}, VISNET), PyGViSNet()],
        ("aspirin", "3bpa"), (1, 10), ("float64",), ((VISNET, "PyG ViSNet"),),
        memory=("aspirin", 10, "float64"),
    ),
    "quinnet": Suite(
        lambda args: [TensorPot({"model": "quinnet"}, QUINNET),
                      TensorPot({"model": "quinnet", "freecg": True}, QUINNET_FREECG),
                      TensorPot({"model": "freecg"}, FREECG), QuinNetOfficial()],
        ("aspirin",), (1, 10), ("float32", "float64"),
        ((QUINNET, "official QuinNet"), (QUINNET_FREECG, QUINNET), (QUINNET_FREECG, FREECG)),
        memory=("aspirin", 10, "float64"),
    ),
    "ictp-freecg": Suite(
        lambda args: [TensorPot(ICTP_PRESET, ICTP),
                      TensorPot({**ICTP_PRESET, "freecg": True, "freecg_max_rank": 2}, ICTP_CG2),
                      TensorPot({**ICTP_PRESET, "freecg": True}, ICTP_CG3),
                      TensorPot({**ICTP_PRESET, "freecg": True, "freecg_odd_paths": True},
                                ICTP_CG3_ODD),
                      TensorPot({"model": "freecg"}, FREECG)],
        ("aspirin", "3bpa"), (1, 10), ("float32", "float64"),
        ((ICTP_CG2, ICTP), (ICTP_CG3, ICTP), (ICTP_CG3_ODD, ICTP), (ICTP_CG3, FREECG)),
        memory=("aspirin", 10, "float32"),
    ),
}  # fmt: skip


def workloads(suite: Suite, args) -> list[harness.Workload]:
    task = "energy" if args.energy_only else "forces"
    grid = []
    for name in args.data or suite.data:
        frames = harness.load_frames(DATA[name], max(args.batches or suite.batches))
        for batch in args.batches or suite.batches:
            for dtype in args.dtypes or suite.dtypes:
                grid.append(harness.Workload(name, frames[:batch], dtype, task))
    return grid


def run(args) -> str:
    suite = SUITES[args.suite]
    torch.set_num_threads(args.threads)
    cases = harness.cases_of(suite.models(args), workloads(suite, args))
    memory = args.memory if args.memory is not None else suite.memory
    repeats = args.repeats or suite.repeats
    limit = min(args.memory_limit_gib, harness.available_gib() - 1.0)

    def measured(case: harness.Case) -> bool:
        w = case.workload
        return args.memory is not False and (memory is None or (w.name, w.batch, w.dtype) == memory)

    results = harness.measure(
        cases, repeats, memory=measured, memory_calls=suite.memory_calls,
        isolate=suite.isolate, threads=args.threads, limit_gib=limit,
    )  # fmt: skip
    head = (
        f"suite {args.suite}: median of {repeats} interleaved calls after a warm-up; "
        f"{harness.machine_line(args.threads)}; child processes killed above {limit:.1f} GiB"
    )
    if args.suite == "peers":
        head += f"; {size_of(args).describe()}, untrained, parameters frozen"
    return head + "\n\n" + harness.report(results, suite.ratios)


def _memory(text: str):
    """``--memory``: ``none``, or ``DATA,BATCH,DTYPE`` (say ``aspirin,1,float64``)."""
    if text == "none":
        return False
    name, batch, dtype = text.split(",")
    return name, int(batch), dtype


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument("--data", type=lambda s: s.split(","), help=f"some of {sorted(DATA)}")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], help="1,10")
    parser.add_argument("--dtypes", type=lambda s: s.split(","), help="float32,float64")
    parser.add_argument("--energy-only", action="store_true")
    parser.add_argument("--repeats", type=int, help="timed rounds (default: the suite's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", type=_memory, help="the workload whose peak memory is "
                        "measured, DATA,BATCH,DTYPE (default: the suite's), or none")  # fmt: skip
    parser.add_argument("--memory-limit-gib", type=float, default=16.0)
    parser.add_argument("--output", type=Path, help="also write the report here")
    add_size_arguments(parser)  # the peers suite's size
    args = parser.parse_args(argv)
    text = run(args)
    print(text)
    if args.output:
        args.output.write_text(f"python {' '.join(sys.argv)}\n\n{text}\n")


if __name__ == "__main__":
    main()
