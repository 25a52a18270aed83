"""ICTP against MACE of the same size on three workloads: training, ASE MD, large fcc cells
(and against FlashCart of the same size, where it is installed).

Both models: 2 interactions, r_max 5 Å, ``channels`` channels, hidden ranks <= max_L, edge
ranks <= max_ell, correlation nu, float64, untrained (speed does not depend on the weights).
Times are medians over repeats interleaved in one process (ICTP, MACE, ICTP, MACE, ...), so
only the ratios of one run mean much on a shared machine. Peak memory is the resident-set
high-water mark (``common.reset_peak_rss`` before the call, ``common.peak_rss_mib`` after),
measured for each model in its own fresh process.

``--workload train``: one training step on a batch of 3BPA frames (forward, forces with
``create_graph=True``, loss ``mean((dE/N)^2) + 10 mean(dF^2)``, backward to the parameters; no
optimiser step, so the weights and every repeat stay the same) and the inference step
(energy + forces) of the same models; FlashCart (``common.build_flashcart``) beside them when
installed.

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
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk

import common
from tensorpot.allocator import retain_freed_memory
from tensorpot.calculators import ase as calculator_module
from tensorpot.calculators.ase import TensorPotCalculator
from tensorpot.data.atoms import atoms_to_graph, collate

ICTP = "tensorpot ICTP"
MACE = "MACE"
FLASHCART = "FlashCart"
CU = [29]
GB24_MIB = 24e9 / 2**20  # 24 GB (decimal) in MiB
FORCE_WEIGHT = 10.0


# ----------------------------------------------------------------------------- models, batches


def ictp(args, elements: list[int]):
    return common.ictp_model(
        args.channels, args.max_L, args.correlation, args.max_ell, atomic_numbers=elements
    )


def mace(args, elements: list[int]):
    """ScaleShiftMACE as in ``common.build_mace``, for any list of elements (float64)."""
    import mace as _mace  # noqa: F401  (must come before e3nn)
    from e3nn import o3
    from mace.modules import RealAgnosticResidualInteractionBlock, ScaleShiftMACE

    channels = args.channels
    hidden = "+".join(f"{channels}x{r}{'e' if r % 2 == 0 else 'o'}" for r in range(args.max_L + 1))
    model = ScaleShiftMACE(
        r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=args.max_ell,
        interaction_cls=RealAgnosticResidualInteractionBlock,
        interaction_cls_first=RealAgnosticResidualInteractionBlock,
        num_interactions=2, num_elements=len(elements), hidden_irreps=o3.Irreps(hidden),
        MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(elements)),
        avg_num_neighbors=15.0, atomic_numbers=elements, correlation=args.correlation,
        gate=torch.nn.functional.silu, atomic_inter_scale=1.0, atomic_inter_shift=0.0,
    )  # fmt: skip
    return model.to(torch.float64).eval()


def flashcart(args, elements: list[int]):
    """FlashCart as in ``common.build_flashcart``, for any list of elements (float64)."""
    return common.build_flashcart(
        args.channels, args.max_L, args.correlation, args.max_ell, atomic_numbers=elements
    )


def ictp_batch(frames: list[Atoms], r_max: float = 5.0):
    return collate([atoms_to_graph(a, r_max) for a in frames], dtype=torch.float64)


def mace_batch(frames: list[Atoms], elements: list[int]) -> dict:
    """MACE's batch dict of ``frames`` (its own neighbour list), floats cast to float64."""
    from mace import data as mace_data
    from mace.tools import AtomicNumberTable, torch_geometric

    table = AtomicNumberTable(elements)
    data = [
        mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=table, cutoff=5.0)
        for a in frames
    ]
    batch = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(data))))
    return {
        k: (v.to(torch.float64) if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in batch.to_dict().items()
    }


def _clear_input_grads(tensors) -> None:
    for t in tensors:
        if torch.is_tensor(t) and t.grad is not None:
            t.grad = None


def _reference(frames: list[Atoms]):
    energy = torch.tensor([a.get_potential_energy() for a in frames], dtype=torch.float64)
    forces = torch.cat([torch.as_tensor(a.get_forces(), dtype=torch.float64) for a in frames])
    atoms = torch.tensor([len(a) for a in frames], dtype=torch.float64)
    return energy, forces, atoms


def _loss(energy: torch.Tensor, forces: torch.Tensor, reference) -> torch.Tensor:
    e_ref, f_ref, atoms = reference
    return (((energy - e_ref) / atoms) ** 2).mean() + FORCE_WEIGHT * ((forces - f_ref) ** 2).mean()


def ictp_train_step(args, frames: list[Atoms]) -> Callable[[], torch.Tensor]:
    """ICTP in train mode: ``model(batch)`` takes forces with ``create_graph=True``."""
    model = ictp(args, common.ELEMENTS).train()
    batch = ictp_batch(frames)
    reference = _reference(frames)

    def run():
        model.zero_grad(set_to_none=True)
        _clear_input_grads(batch)
        out = model(batch, compute_forces=True)
        loss = _loss(out.energy, out.forces, reference)
        loss.backward()
        return loss.detach()

    run.model = model
    return run


def mace_train_step(args, frames: list[Atoms]) -> Callable[[], torch.Tensor]:
    """MACE: ``model(batch, training=True, compute_force=True)`` then ``loss.backward()``."""
    model = mace(args, common.ELEMENTS).train()
    batch = mace_batch(frames, common.ELEMENTS)
    reference = _reference(frames)

    def run():
        model.zero_grad(set_to_none=True)
        _clear_input_grads(batch.values())
        out = model(batch, training=True, compute_force=True)
        loss = _loss(out["energy"], out["forces"], reference)
        loss.backward()
        return loss.detach()

    run.model = model
    return run


def flashcart_train_step(args, frames: list[Atoms]) -> Callable[[], torch.Tensor]:
    """FlashCart: ``model.predict(batch, compute_forces=True, create_graph=True)`` then
    ``loss.backward()``."""
    model = flashcart(args, common.ELEMENTS).train()
    batch = common.flashcart_batch(model, frames)
    reference = _reference(frames)

    def run():
        model.zero_grad(set_to_none=True)
        out = model.predict(batch, compute_forces=True, create_graph=True)
        loss = _loss(out["energy"], out["forces"], reference)
        loss.backward()
        return loss.detach()

    run.model = model
    return run


def fcc_atoms(n: int) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(n)
    atoms.rattle(stdev=0.02, seed=0)
    return atoms


def ictp_fcc_call(args, atoms: Atoms) -> Callable[[], torch.Tensor]:
    model = ictp(args, CU).requires_grad_(False)  # frozen for inference, as in the calculators
    batch = ictp_batch([atoms], model.r_max)

    def run():
        out = model(batch, compute_forces=True, compute_stress=True)
        return out.stress

    return run


def mace_fcc_call(args, atoms: Atoms) -> Callable[[], torch.Tensor]:
    model = mace(args, CU).requires_grad_(False)
    batch = mace_batch([atoms], CU)

    def run():
        return model(batch, compute_force=True, compute_stress=True)["stress"]

    return run


def flashcart_fcc_call(args, atoms: Atoms) -> Callable[[], torch.Tensor]:
    model = flashcart(args, CU).requires_grad_(False)
    batch = common.flashcart_batch(model, [atoms])

    def run():
        return model.predict(batch, compute_forces=True, compute_stress=True)["stress"]

    return run


def make_case(args, case: str) -> Callable:
    """The callable of one named case (used by the memory child)."""
    if case.startswith("fcc-"):
        atoms = fcc_atoms(args.n)
        fcc = {"fcc-ictp": ictp_fcc_call, "fcc-mace": mace_fcc_call}
        fcc["fcc-flashcart"] = flashcart_fcc_call
        if case not in fcc:
            raise ValueError(f"unknown case {case}")
        return fcc[case](args, atoms)
    frames = common.load_frames(args.batch)
    if case == "train-ictp":
        return ictp_train_step(args, frames)
    if case == "train-mace":
        return mace_train_step(args, frames)
    if case == "infer-ictp":
        return common.ictp_call(ictp(args, common.ELEMENTS), frames)
    if case == "infer-mace":
        return common.mace_call(mace(args, common.ELEMENTS), frames)
    if case == "train-flashcart":
        return flashcart_train_step(args, frames)
    if case == "infer-flashcart":
        return common.flashcart_call(flashcart(args, common.ELEMENTS), frames)
    raise ValueError(f"unknown case {case}")


# ----------------------------------------------------------------------------- child processes


def _child_args(args) -> list[str]:
    return [
        "--channels", str(args.channels), "--max-L", str(args.max_L),
        "--max-ell", str(args.max_ell), "--correlation", str(args.correlation),
        "--batch", str(args.batch), "--threads", str(args.threads),
        "--repeats", str(args.repeats), "--large-repeats", str(args.large_repeats),
        "--large-atoms", str(args.large_atoms), "--mace-max-atoms", str(args.mace_max_atoms),
        "--sizes", args.sizes, "--min-seconds", str(args.min_seconds),
        *(["--retain-memory"] if args.retain_memory else []),
    ]  # fmt: skip


def run_child(args, *extra: str) -> dict:
    """Run this script as a child; its last stdout line is JSON. A child that fails gives
    ``{"failed": "..."}``. Its address space is capped at ``--memory-limit-gib`` or at what the
    machine has available less 1 GiB, whichever is smaller, so a cell too large for the (shared)
    machine fails with an allocation error in the child rather than pushing it out of memory."""
    limit = args.memory_limit_gib
    available = _available_gib()
    if limit > 0 and available is not None:
        limit = max(0.5, min(limit, available - 1.0))
    script = str(Path(__file__).resolve())
    cmd = [sys.executable, script, *_child_args(args), *extra, "--memory-limit-gib", f"{limit:.1f}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if any(s in err for s in ("not enough memory", "can't allocate", "MemoryError")):
            return {"failed": f"out of memory (limit {limit:.1f} GiB)"}
        if proc.returncode < 0:
            return {"failed": f"killed by signal {-proc.returncode}"}
        tail = err.splitlines()[-1:] or [""]
        return {"failed": f"exit {proc.returncode}: {tail[0][:80]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_gib() -> float | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) / 2**20
    return None


def limit_memory(gib: float) -> None:
    """Cap the address space of this (child) process, so that a cell too large for the
    machine fails with an allocation error instead of pushing the machine out of memory."""
    if gib > 0:
        limit = int(gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def memory_child(args) -> None:
    call = make_case(args, args.case)
    call()  # first call: lazily built tables, not counted in the call's peak
    lifetime = common.peak_rss_mib()  # high-water mark of the process so far (incl. 1st call)
    before = common.reset_peak_rss()
    call()
    peak = common.peak_rss_mib()
    print(json.dumps({"before": before, "peak": peak, "process_peak": max(peak, lifetime)}))


def fcc_time_child(args) -> None:
    atoms = fcc_atoms(args.n)
    natoms = len(atoms)
    skip = set(args.skip_peers.split(",")) if args.skip_peers else set()
    peers_here = natoms <= args.mace_max_atoms
    with_mace = peers_here and MACE not in skip and common.mace_available()
    with_flashcart = peers_here and FLASHCART not in skip and common.flashcart_available()
    large = natoms > args.large_atoms
    repeats = args.large_repeats if large else args.repeats
    warmup = 1 if large else 2
    nl_calls = {ICTP: lambda: ictp_batch([atoms])}
    calls = {ICTP: ictp_fcc_call(args, atoms)}
    edges = {ICTP: ictp_batch([atoms]).edge_index.shape[1]}
    if with_mace:
        nl_calls[MACE] = lambda: mace_batch([atoms], CU)
        calls[MACE] = mace_fcc_call(args, atoms)
        edges[MACE] = int(mace_batch([atoms], CU)["edge_index"].shape[1])
    if with_flashcart:
        fc_model = flashcart(args, CU)
        nl_calls[FLASHCART] = lambda: common.flashcart_batch(fc_model, [atoms])
        calls[FLASHCART] = flashcart_fcc_call(args, atoms)
        edges[FLASHCART] = int(common.flashcart_batch(fc_model, [atoms])["edge_index"].shape[1])
    nl = common.time_interleaved(nl_calls, repeats, warmup=1)
    times = common.time_interleaved(calls, repeats, warmup=warmup)
    print(
        json.dumps({"atoms": natoms, "edges": edges, "nl": nl, "model": times, "repeats": repeats})
    )


def fcc_sizes_child(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    calls = {n: ictp_fcc_call(args, fcc_atoms(n)) for n in sizes}
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
    print(json.dumps(out))


# ----------------------------------------------------------------------------- workloads


def header(args, what: str) -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"C={args.channels}, max_L={args.max_L}, max_ell={args.max_ell}, nu={args.correlation}, "
        f"float64, threads={args.threads}, {what}; {cpu}, torch {torch.__version__}"
    )


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


#: the models of the training workload:
#: (name, memory-child key, available, train step, model, inference call)
TRAIN_MODELS = [
    (ICTP, "ictp", lambda: True, ictp_train_step, ictp, common.ictp_call),
    (MACE, "mace", common.mace_available, mace_train_step, mace, common.mace_call),
    (FLASHCART, "flashcart", common.flashcart_available, flashcart_train_step, flashcart,
     common.flashcart_call),
]  # fmt: skip


def workload_train(args) -> None:
    frames = common.load_frames(args.batch)
    calls, keys, skipped = {}, {}, []
    for name, key, available, train_step, build, infer in TRAIN_MODELS:
        if not available():
            skipped.append(name)
            continue
        calls[("train", name)] = train_step(args, frames)
        calls[("infer", name)] = infer(build(args, common.ELEMENTS), frames)
        keys[name] = key
    for key in [k for k in calls if k[0] == "train"]:  # the step must reach every parameter
        calls[key]()
        params = [p for p in calls[key].model.parameters() if p.requires_grad]
        reached = sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
        print(f"{key[1]}: {reached}/{len(params)} parameter tensors get a non-zero gradient")
    times = common.time_interleaved(calls, args.repeats)
    memory = {}
    for step, name in calls:
        case = f"{step}-{keys[name]}"
        memory[(step, name)] = run_child(args, "--child", "memory", "--case", case)
    atoms = sum(len(a) for a in frames)
    print(
        f"\n3BPA, batch {args.batch} ({atoms} atoms), "
        + header(args, f"median of {args.repeats} interleaved repeats")
        + "\n"
    )
    names, peers = list(keys), list(keys)[1:]
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
        m = {n: _extra(memory.get((step, n))) for n in names}
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


def _extra(mem: dict | None) -> float | None:
    if mem is None or "failed" in mem:
        return None
    return mem["peak"] - mem["before"]


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

    start = common.load_frames(1)[0]
    start = Atoms(start.numbers, start.positions, cell=start.cell, pbc=start.pbc)

    def dynamics(calc):
        atoms = start.copy()
        thermalize(atoms, temperature_K=300, rng=np.random.default_rng(0))
        vd.Stationary(atoms)
        atoms.calc = calc
        return atoms, VelocityVerlet(atoms, timestep=0.5 * units.fs)

    ictp_model = ictp(args, common.ELEMENTS)
    systems = {ICTP: dynamics(TensorPotCalculator(model=ictp_model))}
    bare = {f"{ICTP} bare": common.ictp_call(ictp_model, [start])}
    # the calculator's input checks: the step without them, and the checks alone
    _, unchecked_dyn = dynamics(TensorPotCalculator(model=ictp_model))
    checks = {
        f"{ICTP} unchecked": lambda: _without_input_checks(lambda: unchecked_dyn.run(1)),
        "input checks": lambda: calculator_module.check_structure(start),
    }
    dtype_note = ""
    if common.mace_available():
        from mace.calculators import MACECalculator

        mace_model = mace(args, common.ELEMENTS)
        before = torch.get_default_dtype()
        calc = MACECalculator(models=mace_model, device="cpu", default_dtype="float64")
        after = torch.get_default_dtype()
        if after != before:  # restore what MACECalculator changed globally
            torch.set_default_dtype(before)
        dtype_note = f"torch default dtype before MACECalculator {before}, after {after}" + (
            f", restored to {before}" if after != before else " (unchanged)"
        )
        systems[MACE] = dynamics(calc)
        bare[f"{MACE} bare"] = common.mace_call(mace_model, [start])
    calls = {name: (lambda dyn=dyn: dyn.run(1)) for name, (_, dyn) in systems.items()}
    if common.flashcart_available():
        from flashcart.calculators import FlashCartCalculator

        fc_model = flashcart(args, common.ELEMENTS).requires_grad_(False)
        systems[FLASHCART] = dynamics(FlashCartCalculator(model=fc_model))
        # its calculator builds graphs in torch's default dtype: float64 around each step only
        calls[FLASHCART] = lambda dyn=systems[FLASHCART][1]: _in_float64(lambda: dyn.run(1))
        bare[f"{FLASHCART} bare"] = common.flashcart_call(fc_model, [start])
    times = common.time_interleaved(
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


#: the peers of the fcc workload: (name, memory-child case, available)
FCC_PEERS = [
    (MACE, "fcc-mace", common.mace_available),
    (FLASHCART, "fcc-flashcart", common.flashcart_available),
]


def workload_fcc(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        natoms = 4 * n**3
        print(f"fcc n={n} ({natoms} atoms): memory ...", file=sys.stderr, flush=True)
        mem = {ICTP: run_child(args, "--child", "memory", "--case", "fcc-ictp", "--n", str(n))}
        if "failed" in mem[ICTP]:  # the timing child would fail the same way
            timing = {"failed": f"not timed (memory child: {mem[ICTP]['failed']})"}
        else:
            for name, case, available in FCC_PEERS:
                if natoms <= args.mace_max_atoms and available():
                    mem[name] = run_child(args, "--child", "memory", "--case", case, "--n", str(n))
            failed = [name for name in mem if name != ICTP and "failed" in mem[name]]
            skip = ["--skip-peers", ",".join(failed)] if failed else []
            print(f"fcc n={n}: timing ...", file=sys.stderr, flush=True)
            timing = run_child(args, "--child", "fcc-time", "--n", str(n), *skip)
        rows.append((n, natoms, timing, mem))
        print(f"fcc n={n}: {json.dumps(timing)} {json.dumps(mem)}", file=sys.stderr, flush=True)
    print(
        "\nfcc Cu (a = 3.61 Å, rattled 0.02 Å), periodic, energy + forces + stress, "
        + header(
            args,
            f"median of {args.repeats} interleaved repeats "
            f"({args.large_repeats} above {args.large_atoms} atoms)",
        )
        + "\n"
    )
    names = [ICTP] + [name for name, _, available in FCC_PEERS if available()]
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
            cells += [_peak(mem.get(name)), _fmt(_extra(mem.get(name)), ".0f")]
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
    result = run_child(args, "--child", "fcc-sizes")
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
    parser.add_argument("--workload", choices=["train", "md", "fcc", "fcc-sizes"], default="train")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-L", type=int, default=2)
    parser.add_argument("--max-ell", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
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
    parser.add_argument(
        "--child", choices=["memory", "fcc-time", "fcc-sizes"], help=argparse.SUPPRESS
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--skip-peers", default="", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        limit_memory(args.memory_limit_gib)
        if args.retain_memory:
            retain_freed_memory()
    if args.child == "memory":
        memory_child(args)
    elif args.child == "fcc-time":
        fcc_time_child(args)
    elif args.child == "fcc-sizes":
        fcc_sizes_child(args)
    elif args.workload == "train":
        workload_train(args)
    elif args.workload == "md":
        workload_md(args)
    elif args.workload == "fcc":
        workload_fcc(args)
    else:
        workload_fcc_sizes(args)


if __name__ == "__main__":
    main()
