"""ICTP against MACE of the same size on three workloads: training, ASE MD, large fcc cells
(and against FlashCart of the same size, where it is installed).

Both models: 2 interactions, r_max 5 Å, ``channels`` channels, hidden ranks <= max_L, edge
ranks <= max_ell, correlation nu, float64, untrained (speed does not depend on the weights).
Times are medians over repeats interleaved in one process (ICTP, MACE, ICTP, MACE, ...), so
only the ratios of one run mean much on a shared machine. Peak memory is the resident-set
high-water mark (``tensorpot.benchmarking.harness.peak_memory``: reset before the call, read
after), measured for each model in its own fresh process.

``--workload train``: one training step on a batch of 3BPA frames (forward, forces with
``create_graph=True``, loss ``mean((dE/N)^2) + 10 mean(dF^2)``, backward to the parameters; no
optimiser step, so the weights and every repeat stay the same) and the inference step
(energy + forces) of the same models; FlashCart (``tensorpot.benchmarking.adapters.FlashCart``)
beside them when installed.

``--workload md``: one ``VelocityVerlet`` step (0.5 fs) of one 3BPA molecule through
``TensorPotCalculator`` and ``MACECalculator`` (and ``FlashCartCalculator`` when installed);
also the bare model call (energy + forces) on the starting geometry, and tensorpot's step
without the calculator's input checks (``check_structure``) and the checks alone.

``--workload fcc``: energy + forces + stress of periodic fcc Cu cells (a = 3.61 Å, cubic cell
repeated n times, rattled by 0.02 Å), models with ``atomic_numbers [29]``; the neighbour list
(graph and batch building) is timed separately. Every size runs in child processes whose
address space is capped (``--memory-limit-gib``, and never above the machine's available memory
less 1 GiB), so a cell that does not fit only ends its own child. The peers (MACE, and
FlashCart where installed) run up to ``--mace-max-atoms``. Whether ``--fit-atoms`` atoms fit
in 24 GB is measured when such a cell ran, otherwise extrapolated (and said so) from the two
largest cells that did.

``--workload fcc-sizes``: ICTP's time per atom over the fcc cells of ``--sizes``, all in one
child process with the sizes interleaved (n1, n2, ..., n1, n2, ...), so the per-atom times of
one run share the machine's state; in every round each cell's calls run back to back for at
least ``--min-seconds`` (as in a simulation of that cell, not cold after a larger cell's
call); with each call's page faults and system CPU time (``getrusage``), the kernel's share of
the call. Each size's time per atom is given against the fastest size's (medians over the
rounds) and, drift between rounds cancelling, as the median over the rounds of its ratio to
that round's fastest size.

``--retain-memory``: the child processes call :func:`tensorpot.allocator.retain_freed_memory`
first (glibc keeps freed memory instead of unmapping it); the default is the C library's own
behaviour.

One thread by default: on a shared 2-core machine two OpenMP threads per process were several
times slower and much noisier than one.

    python benchmarks/workloads.py --workload train
    python benchmarks/workloads.py --workload md
    python benchmarks/workloads.py --workload fcc --sizes 3,4,6,8,10,12,14 --repeats 5 \
        --large-atoms 500 --large-repeats 3 --mace-max-atoms 2500
    python benchmarks/workloads.py --workload fcc-sizes --sizes 3,5,8,11,14 --threads 2 \
        --large-repeats 3 --memory-limit-gib 20 [--retain-memory]
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk

from tensorpot.benchmarking import harness
from tensorpot.benchmarking.adapters import (
    FlashCart,
    Mace,
    TensorPot,
    add_size_arguments,
    ictp_config,
    size_of,
)
from tensorpot.benchmarking.harness import Case, Workload
from tensorpot.calculators import ase as calculator_module
from tensorpot.calculators.ase import TensorPotCalculator
from tensorpot.data.atoms import atoms_to_graph

DATA = Path(__file__).resolve().parents[1] / "data" / "3bpa" / "test_300K_first200.xyz"
ICTP = "tensorpot ICTP"
MACE = "MACE"
FLASHCART = "FlashCart"
GB24_MIB = 24e9 / 2**20  # 24 GB (decimal) in MiB


def models(args) -> list:
    """ICTP, MACE and FlashCart of the size of ``args``, tensorpot first."""
    size = size_of(args)
    return [TensorPot(ictp_config(size), ICTP), Mace(size), FlashCart(size)]


def fcc_atoms(n: int) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)
    atoms.rattle(stdev=0.02, seed=0)
    return atoms


def fcc_workload(n: int) -> Workload:
    return Workload(f"fcc n={n}", [fcc_atoms(n)], task="stress")


def bare_call(adapter, model, workload: Workload) -> Callable:
    """``adapter``'s call of an existing ``model`` (frozen) on its batch of ``workload``."""
    model.requires_grad_(False)
    batch = adapter.batch(model, workload)
    return lambda: adapter.call(model, batch, workload)


def _edges(batch) -> int:
    edges = getattr(batch, "edge_index", None)
    return int((batch["edge_index"] if edges is None else edges).shape[1])


# ----------------------------------------------------------------------------- child processes


def child_options(args) -> dict:
    """The children's threads and allocator, and their address-space cap: ``--memory-limit-gib``
    or what the machine has available less 1 GiB, whichever is smaller, so that a cell too large
    for the (shared) machine fails with an allocation error in its child rather than pushing the
    machine out of memory."""
    limit = args.memory_limit_gib
    if limit > 0:
        limit = max(0.5, min(limit, harness.available_gib() - 1.0))
    return {"threads": args.threads, "retain_memory": args.retain_memory,
            "address_space_gib": limit or None}  # fmt: skip


def memory(args, case: Case) -> dict:
    """Peak memory of one call of ``case`` after a warm-up call, in a fresh capped process."""
    return harness.peak_memory(case, 1, **child_options(args))


def in_child(args, function: Callable, *rest) -> dict:
    out = harness.run_in_child(function, vars(args), *rest, **child_options(args))
    return out.get("value", out)


def fcc_time(options: dict, n: int, skip: list[str]) -> dict:
    """In a child: neighbour lists and calls of the fcc cell, interleaved (peers up to
    ``--mace-max-atoms``, not those in ``skip``)."""
    args = argparse.Namespace(**options)
    workload = fcc_workload(n)
    natoms = workload.atoms
    large = natoms > args.large_atoms
    repeats = args.large_repeats if large else args.repeats
    nl_calls, calls, edges = {}, {}, {}
    for adapter in models(args):
        name = adapter.name
        if name != ICTP and (natoms > args.mace_max_atoms or name in skip or adapter.missing()):
            continue
        model = adapter.build(workload)
        nl_calls[name] = lambda a=adapter, m=model: a.batch(m, workload)
        calls[name] = adapter.prepare(workload)
        edges[name] = _edges(adapter.batch(model, workload))
    nl = harness.time_interleaved(nl_calls, repeats, warmup=1)
    times = harness.time_interleaved(calls, repeats, warmup=1 if large else 2)
    return {"atoms": natoms, "edges": edges, "nl": nl, "model": times, "repeats": repeats}


def fcc_sizes(options: dict) -> dict:
    """In a child: ICTP's calls of every fcc cell of ``--sizes``, interleaved in bursts."""
    args = argparse.Namespace(**options)
    sizes = [int(s) for s in args.sizes.split(",")]
    calls = {n: models(args)[0].prepare(fcc_workload(n)) for n in sizes}
    bursts = {}
    for n, call in calls.items():  # warm-up; a burst of calls takes at least --min-seconds
        call()  # the first call builds lazy tables
        start = time.perf_counter()
        call()
        bursts[n] = max(1, math.ceil(args.min_seconds / (time.perf_counter() - start)))
    samples = {n: [] for n in sizes}
    for _ in range(args.large_repeats):
        for n, call in calls.items():
            k = bursts[n]
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for _ in range(k):  # consecutive calls, as in a simulation of that cell
                call()
            wall = (time.perf_counter() - start) / k
            after = resource.getrusage(resource.RUSAGE_SELF)
            user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
            faults = (after.ru_minflt - before.ru_minflt + after.ru_majflt - before.ru_majflt) / k
            samples[n].append((wall, faults, system / max(user + system, 1e-9)))
    # per round, every size against that round's fastest per-atom time: drift between rounds
    # (a shared machine's load) cancels in these ratios
    per_atom = {n: [row[0] / (4 * n**3) for row in rows] for n, rows in samples.items()}
    fastest = [min(column) for column in zip(*per_atom.values())]
    out = {}
    for n, rows in samples.items():
        wall, faults, share = (statistics.median(col) for col in zip(*rows))
        ratio = statistics.median(t / f for t, f in zip(per_atom[n], fastest))
        out[str(n)] = {
            "atoms": 4 * n**3, "seconds": wall, "faults": faults, "system": share,
            "calls": bursts[n], "round_ratio": ratio,
        }  # fmt: skip
    return out


# ----------------------------------------------------------------------------- workloads


def header(args, what: str) -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"C={args.channels}, max_L={args.max_L}, max_ell={args.max_ell}, nu={args.correlation}, "
        f"float64, threads={args.threads}, {what}; {cpu}, torch {torch.__version__}"
    )


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


_ratio = harness._ratio


def workload_train(args) -> None:
    frames = harness.load_frames(DATA, args.batch)
    steps = {"train": Workload("3bpa", frames, task="train"), "infer": Workload("3bpa", frames)}
    calls, cases, skipped = {}, {}, []
    for adapter in models(args):
        if adapter.missing():
            skipped.append(adapter.name)
            continue
        for step, workload in steps.items():
            cases[(step, adapter.name)] = Case(adapter, workload)
            calls[(step, adapter.name)] = adapter.prepare(workload)
    for key in [k for k in calls if k[0] == "train"]:  # the step must reach every parameter
        calls[key]()
        params = [p for p in calls[key].model.parameters() if p.requires_grad]
        reached = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
        print(f"{key[1]}: {reached}/{len(params)} parameter tensors get a non-zero gradient")
    times = harness.time_interleaved(calls, args.repeats)
    memory_of = {key: memory(args, case) for key, case in cases.items()}
    atoms = sum(len(a) for a in frames)
    print(
        f"\n3BPA, batch {args.batch} ({atoms} atoms), "
        + header(args, f"median of {args.repeats} interleaved repeats")
        + "\n"
    )
    names = list(dict.fromkeys(name for _, name in calls))
    peers = names[1:]
    head = [f"{n} (ms)" for n in names] + [f"ratio tensorpot / {n}" for n in peers]
    head += [f"{n} peak extra (MiB)" for n in names] + [f"memory ratio / {n}" for n in peers]
    print("| step | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    labels = {
        "train": "training step: E + F (create_graph), loss, backward",
        "infer": "inference: E + F",
    }
    for step, label in labels.items():
        t = {n: times.get((step, n)) for n in names}
        m = {n: harness.extra_mib(memory_of.get((step, n))) for n in names}
        row = [_fmt(t[n] and 1e3 * t[n]) for n in names] + [_ratio(t[ICTP], t[n]) for n in peers]
        row += [_fmt(m[n]) for n in names] + [_ratio(m[ICTP], m[n]) for n in peers]
        print(f"| {label} | " + " | ".join(row) + " |")
    print(
        "\nms per step of the whole batch; peak extra = RSS high-water mark during one call "
        "minus the RSS before it, in a fresh process after one warm-up call."
    )
    for name in skipped:
        print(f"{name} skipped: not installed (pip install -e '.[bench]').")


def _in_float64(fn: Callable[[], object]) -> None:
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fn()
    finally:
        torch.set_default_dtype(before)


def _without_input_checks(call):
    """Run ``call`` with TensorPotCalculator's input checks replaced by a no-op."""
    checks = calculator_module.check_structure
    calculator_module.check_structure = lambda atoms: None
    try:
        return call()
    finally:
        calculator_module.check_structure = checks


def workload_md(args) -> None:
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    # ase >= 3.29 names it thermalize_momenta (MaxwellBoltzmannDistribution is deprecated)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution

    start = harness.load_frames(DATA, 1)[0]
    workload = Workload("3bpa", [start])
    ours, mace, flashcart = models(args)

    def dynamics(calc):
        atoms = start.copy()
        thermalize(atoms, temperature_K=300, rng=np.random.default_rng(0))
        vd.Stationary(atoms)
        atoms.calc = calc
        return atoms, VelocityVerlet(atoms, timestep=0.5 * units.fs)

    ictp_model = ours.build(workload).eval()
    systems = {ICTP: dynamics(TensorPotCalculator(model=ictp_model))}
    bare = {f"{ICTP} bare": bare_call(ours, ictp_model, workload)}
    # the calculator's input checks: the step without them, and the checks alone
    _, unchecked_dyn = dynamics(TensorPotCalculator(model=ictp_model))
    checks = {
        f"{ICTP} unchecked": lambda: _without_input_checks(lambda: unchecked_dyn.run(1)),
        "input checks": lambda: calculator_module.check_structure(start),
    }
    dtype_note = ""
    if not mace.missing():
        from mace.calculators import MACECalculator

        mace_model = mace.build(workload).eval()
        before = torch.get_default_dtype()
        calc = MACECalculator(models=mace_model, device="cpu", default_dtype="float64")
        after = torch.get_default_dtype()
        if after != before:  # restore what MACECalculator changed globally
            torch.set_default_dtype(before)
        dtype_note = f"torch default dtype before MACECalculator {before}, after {after}" + (
            f", restored to {before}" if after != before else " (unchanged)"
        )
        systems[MACE] = dynamics(calc)
        bare[f"{MACE} bare"] = bare_call(mace, mace_model, workload)
    calls = {name: (lambda dyn=dyn: dyn.run(1)) for name, (_, dyn) in systems.items()}
    if not flashcart.missing():
        from flashcart.calculators import FlashCartCalculator

        fc_model = flashcart.build(workload).eval().requires_grad_(False)
        systems[FLASHCART] = dynamics(FlashCartCalculator(model=fc_model))
        # its calculator builds graphs in torch's default dtype: float64 around each step only
        calls[FLASHCART] = lambda dyn=systems[FLASHCART][1]: _in_float64(lambda: dyn.run(1))
        bare[f"{FLASHCART} bare"] = bare_call(flashcart, fc_model, workload)
    times = harness.time_interleaved(
        {**calls, **bare, **checks}, args.md_steps, warmup=args.md_warmup
    )
    steps = args.md_warmup + args.md_steps
    print(
        f"\n3BPA molecule ({len(start)} atoms), VelocityVerlet 0.5 fs, 300 K start, "
        + header(
            args,
            f"median of {args.md_steps} steps after {args.md_warmup} warm-up steps, interleaved",
        )
        + "\n"
    )
    names = list(systems)
    head = [f"{n} (ms)" for n in names] + [f"ratio tensorpot / {n}" for n in names[1:]]
    print("| | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for label, suffix in (("MD step (ASE calculator)", ""), ("bare model call, E + F", " bare")):
        t = [times[n + suffix] for n in names]
        row = [f"{1e3 * x:.2f}" for x in t] + [_ratio(t[0], x) for x in t[1:]]
        print(f"| {label} | " + " | ".join(row) + " |")
    checked, unchecked = times[ICTP], times[f"{ICTP} unchecked"]
    print(
        f"\n{ICTP}'s input checks (calculators.ase.check_structure): "
        f"{1e6 * times['input checks']:.1f} us alone; MD step {1e3 * checked:.2f} ms with them, "
        f"{1e3 * unchecked:.2f} ms without (ratio {checked / unchecked:.3f})"
    )
    print()
    for name, (atoms, _) in systems.items():
        shift = np.linalg.norm(atoms.positions - start.positions, axis=1).max()
        edges0 = atoms_to_graph(start, 5.0).num_edges
        edges1 = atoms_to_graph(atoms, 5.0).num_edges
        fmax = np.linalg.norm(atoms.get_forces(), axis=1).max()
        print(
            f"{name}: {steps} steps run, largest displacement {shift:.3f} Å, edges "
            f"{edges0} -> {edges1}, max |F| at the end {fmax:.2f} eV/Å"
        )
    if dtype_note:
        print(dtype_note + f"; after the MD steps: {torch.get_default_dtype()}")
        print(
            "MACECalculator (model_type MACE) always computes stress as well; "
            "TensorPotCalculator only for periodic cells (here: energy + forces)."
        )
    if FLASHCART in systems:
        print(
            "FlashCartCalculator builds its graphs in torch's default dtype; its steps run with "
            "the default set to float64 (and restored after each step)."
        )


def workload_fcc(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    ours, *others = models(args)
    fcc_peers = [adapter for adapter in others if not adapter.missing()]
    rows = []
    for n in sizes:
        natoms = 4 * n**3
        print(f"fcc n={n} ({natoms} atoms): memory ...", file=sys.stderr, flush=True)
        mem = {ICTP: memory(args, Case(ours, fcc_workload(n)))}
        if "failed" in mem[ICTP]:  # the timing child would fail the same way
            timing = {"failed": f"not timed (memory child: {mem[ICTP]['failed']})"}
        else:
            for adapter in fcc_peers:
                if natoms <= args.mace_max_atoms:
                    mem[adapter.name] = memory(args, Case(adapter, fcc_workload(n)))
            failed = [name for name in mem if name != ICTP and "failed" in mem[name]]
            print(f"fcc n={n}: timing ...", file=sys.stderr, flush=True)
            timing = in_child(args, fcc_time, n, failed)
        rows.append((n, natoms, timing, mem))
        print(f"fcc n={n}: {timing} {mem}", file=sys.stderr, flush=True)
    print(
        "\nfcc Cu (a = 3.61 Å, rattled 0.02 Å), periodic, energy + forces + stress, "
        + header(
            args,
            f"median of {args.repeats} interleaved repeats "
            f"({args.large_repeats} above {args.large_atoms} atoms)",
        )
        + "\n"
    )
    names = [ICTP] + [adapter.name for adapter in fcc_peers]
    peers = names[1:]
    head = ["n", "atoms", "edges"] + [f"NL {n} (µs/atom)" for n in names]
    head += [f"{n} (µs/atom)" for n in names] + [f"ratio tensorpot / {n}" for n in peers]
    head += [f"{n} {what} (MiB)" for n in names for what in ("peak RSS", "extra")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    skipped = []
    for n, natoms, timing, mem in rows:
        if "failed" in timing:
            cells = [str(n), str(natoms), "–"] + ["–"] * len(names) + [timing["failed"]]
            cells += ["–"] * (len(names) - 1 + len(peers))
            for name in names:
                cells += [_peak(mem.get(name)), "–"]
            print("| " + " | ".join(cells) + " |")
            continue
        us = {k: 1e6 * v / natoms for k, v in timing["model"].items()}
        nl = {k: 1e6 * v / natoms for k, v in timing["nl"].items()}
        skipped += [(name, natoms) for name in peers if name not in us]
        cells = [str(n), str(natoms), str(timing["edges"][ICTP])]
        cells += [_fmt(nl.get(name)) for name in names] + [_fmt(us.get(name)) for name in names]
        cells += [_ratio(us[ICTP], us.get(name)) for name in peers]
        for name in names:
            cells += [_peak(mem.get(name)), _fmt(harness.extra_mib(mem.get(name)), ".0f")]
        print("| " + " | ".join(cells) + " |")
        for name in peers:
            if name in timing["edges"] and timing["edges"][name] != timing["edges"][ICTP]:
                print(f"(n={n}: {name}'s graph has {timing['edges'][name]} edges)")
    print(
        "\nNL = neighbour list and batch building (tensorpot: atoms_to_graph + collate; MACE: "
        "AtomicData.from_config + DataLoader; FlashCart: AtomicConfig.compute_neighbors + "
        "DataLoader), not included in the model times. Peak RSS = high-water mark of a fresh "
        "process over its life (model, graph, a warm-up call and the measured call); extra = "
        "high-water mark during the measured call minus the RSS before it."
    )
    for name in peers:
        cells = [str(a) for peer, a in skipped if peer == name]
        if cells:
            print(
                f"{name} skipped for {', '.join(cells)} atoms (--mace-max-atoms "
                f"{args.mace_max_atoms}, or its memory child failed)."
            )
    cap = args.memory_limit_gib
    print(
        f"Every child process ran under an address-space cap of min({cap:g} GiB "
        "(--memory-limit-gib), available memory - 1 GiB)."
    )
    fit_verdict(rows, args.fit_atoms)


def workload_fcc_sizes(args) -> None:
    print(f"fcc sizes {args.sizes}: timing in one process ...", file=sys.stderr, flush=True)
    result = in_child(args, fcc_sizes)
    print(
        "\nfcc Cu (a = 3.61 Å, rattled 0.02 Å), periodic, energy + forces + stress, ICTP alone, "
        "all sizes in one process, interleaved, "
        + header(args, f"median of {args.large_repeats} rounds")
        + f", each size's calls in a burst of at least {args.min_seconds:g} s a round"
        + (", glibc keeping freed memory (--retain-memory)" if args.retain_memory else "")
        + "\n"
    )
    if "failed" in result:
        print(f"failed: {result['failed']}")
        return
    rows = list(result.values())
    best = min(r["seconds"] / r["atoms"] for r in rows)
    print(
        "| atoms | ICTP (ms/atom) | against the fastest | against each round's fastest "
        "| calls per burst | page faults per call | system share of the call's CPU time |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        per_atom = r["seconds"] / r["atoms"]
        print(
            f"| {r['atoms']} | {1e3 * per_atom:.2f} | {per_atom / best:.2f} "
            f"| {r['round_ratio']:.2f} | {r['calls']} | {r['faults']:.0f} "
            f"| {100 * r['system']:.1f} % |"
        )
    print(
        "\nms/atom: median over the rounds; against the fastest: that median over the smallest "
        "median; against each round's fastest: the median over the rounds of the size's time "
        "per atom over the fastest size's in the same round (drift between rounds cancels)."
    )


def fit_verdict(rows, fit_atoms: int) -> None:
    """Do ``fit_atoms`` atoms fit in 24 GB? Measured if a cell at least that large ran its ICTP
    memory child, otherwise a line through the two largest measured cells, labelled as such."""
    done = [(a, m[ICTP]["process_peak"]) for _, a, _, m in rows if "failed" not in m[ICTP]]
    big = [(a, p) for a, p in done if a >= fit_atoms]
    if big:
        cell, peak = big[0]
        how = f"measured on the {cell}-atom cell"
    elif len(done) >= 2:
        (a0, p0), (a1, p1) = done[-2], done[-1]
        slope = (p1 - p0) / (a1 - a0)
        peak = p1 + slope * (fit_atoms - a1)
        most = a1 + (GB24_MIB - p1) / slope
        how = (
            f"NOT measured; extrapolated linearly from the {a0}- and {a1}-atom cells, "
            f"{slope:.2f} MiB/atom, which reaches 24 GB at about {most:.0f} atoms"
        )
    else:
        print(f"{fit_atoms} atoms: too few cells measured to say whether they fit in 24 GB.")
        return
    verdict = "fits" if peak < GB24_MIB else "does NOT fit"
    print(
        f"{fit_atoms} atoms, ICTP E + F + S: process peak RSS {peak:.0f} MiB = "
        f"{peak * 2**20 / 1e9:.1f} GB ({how}): {verdict} in 24 GB ({GB24_MIB:.0f} MiB)."
    )


def _peak(mem: dict | None) -> str:
    if mem is None:
        return "–"
    if "failed" in mem:
        return mem["failed"]
    return f"{mem['process_peak']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="train")
    add_size_arguments(parser, channels=32)
    parser.add_argument("--batch", type=int, default=10, help="3BPA frames per training step")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--md-steps", type=int, default=20, help="timed MD steps")
    parser.add_argument("--md-warmup", type=int, default=3, help="MD steps before timing")
    parser.add_argument("--sizes", default="3,4,6,8,10,14", help="fcc repeats n (4 n^3 atoms)")
    parser.add_argument(
        "--mace-max-atoms",
        type=int,
        default=4000,
        help="fcc: run the peers (MACE, FlashCart) only up to this many atoms",
    )
    parser.add_argument(
        "--large-atoms",
        type=int,
        default=2000,
        help="fcc: above this many atoms use --large-repeats",
    )
    parser.add_argument("--large-repeats", type=int, default=3)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="fcc-sizes: every round runs each cell's calls back to back for at least this long",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=16.0,
        help="address-space cap of every child process (0: none)",
    )
    parser.add_argument(
        "--fit-atoms", type=int, default=10000, help="fcc: say whether this many atoms fit in 24 GB"
    )
    parser.add_argument(
        "--retain-memory",
        action="store_true",
        help="child processes keep freed memory (tensorpot.allocator.retain_freed_memory)",
    )
    args = parser.parse_args()  # fmt: skip
    torch.set_num_threads(args.threads)
    WORKLOADS[args.workload](args)


WORKLOADS = {
    "train": workload_train,
    "md": workload_md,
    "fcc": workload_fcc,
    "fcc-sizes": workload_fcc_sizes,
}


if __name__ == "__main__":
    main()
