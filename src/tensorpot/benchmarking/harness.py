"""The benchmark harness: a case is one model code (an :class:`Adapter`) on one
:class:`Workload`; a benchmark is a list of cases.

- Time: the cases of one workload are timed interleaved (``a, b, c, a, b, c, ...``), so that
  a shared machine's drift falls on all of them alike; each gets the median seconds per call,
  reported per structure (:func:`time_cases`).
- Memory: each case in a fresh child process, which reports the resident-set high-water mark
  of its whole life and of its measured calls (:func:`peak_memory`). The parent watches the
  child's resident memory and kills it above a limit, so that a model too large for the
  machine ends its own child, not the machine (:func:`run_in_child`).
- Report: Markdown tables with the ratios of chosen pairs of models (:func:`report`).

A new model code is a new :class:`Adapter` subclass, in any importable module: the child
process imports it by the parent's ``sys.path``. A new workload is a new :class:`Workload`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from tensorpot.errors import TensorPotError

#: what one call computes, and its label in tables
TASKS = {
    "energy": "E",
    "forces": "E + F",
    "stress": "E + F + S",
    "train": "training step",
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: weight of the force term in the training step's loss
FORCE_WEIGHT = 10.0


# ----------------------------------------------------------------------------- cases


def load_frames(path: str | Path, count: int) -> tuple:
    """The first ``count`` structures of ``path`` as plain ``ase.Atoms`` (no labels).

    ``.npz`` files (rMD17, MD17) are read by tensorpot's reader, anything else by ASE.
    """
    import ase.io
    from ase import Atoms

    path = Path(path)
    if not path.is_file():
        raise TensorPotError(f"{path}: no such structure file")
    if path.suffix.lower() == ".npz":
        from tensorpot.data.readers import read_configurations

        frames = [c.structure() for c in read_configurations(path)[:count]]
    else:
        frames = ase.io.read(path, index=f":{count}")
        frames = [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in frames]
    if len(frames) < count:
        raise TensorPotError(f"{path}: {len(frames)} structures, {count} wanted")
    return tuple(frames)


@dataclass(frozen=True, eq=False)
class Workload:
    """What one timed call computes: ``frames`` as one batch, in ``dtype``, for ``task``
    (a key of :data:`TASKS`; ``"train"`` is E + F with the graph kept, a loss and its
    backward pass to the parameters).

    Cases share a workload by being given the same object: those are timed interleaved.
    """

    name: str
    frames: tuple
    dtype: str = "float64"
    task: str = "forces"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {self.dtype!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, not {self.task!r}")
        if not self.frames:
            raise ValueError("a workload needs at least one structure")
        object.__setattr__(self, "frames", tuple(self.frames))

    @property
    def batch(self) -> int:
        return len(self.frames)

    @property
    def atoms(self) -> int:
        return sum(len(a) for a in self.frames)

    @property
    def elements(self) -> list[int]:
        return sorted({int(z) for a in self.frames for z in a.numbers})

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def label(self) -> str:
        return f"{self.name}, batch {self.batch}, {self.dtype}, {TASKS[self.task]}"


class Output(NamedTuple):
    """One call's results: energies ``[B]``, forces ``[N, 3]`` and stress (in the code's own
    layout: ``[B, 3, 3]`` or Voigt) where the task computes them."""

    energy: torch.Tensor
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None


class Adapter:
    """One model code under test, seen through three methods.

    :meth:`build` makes the model for a workload (its elements and dtype), :meth:`batch` its
    input of the workload's frames (with its own neighbour list), :meth:`call` one call.
    ``tasks`` lists the tasks it can run; :meth:`missing` says why it cannot run here at all
    (a package or a file that is not there). Instances are pickled into child processes, so
    they hold plain settings only.
    """

    name = "model"
    tasks: tuple[str, ...] = ("energy", "forces")

    def missing(self) -> str | None:
        """Why this code cannot run here, or None."""
        return None

    def build(self, workload: Workload) -> torch.nn.Module:
        raise NotImplementedError

    def batch(self, model: torch.nn.Module, workload: Workload) -> Any:
        raise NotImplementedError

    def call(self, model: torch.nn.Module, batch: Any, workload: Workload) -> Output:
        raise NotImplementedError

    def prepare(self, workload: Workload) -> Callable[[], Output]:
        """The timed call of ``workload``: the model and its batch are made once here.

        Inference runs in eval mode with the parameters frozen (as the calculators of
        tensorpot, MACE and FlashCart hold them). A training step runs in train mode:
        zeroed gradients, the call, ``mean((E/N)^2) + 10 mean(F^2)`` and its backward pass
        (the loss's labels are zeros: the work does not depend on them).
        """
        training = workload.task == "train"
        model = self.build(workload).train(training).requires_grad_(training)
        batch = self.batch(model, workload)
        if not training:
            return lambda: self.call(model, batch, workload)
        atoms = torch.tensor([len(a) for a in workload.frames], dtype=torch.float64)

        def step() -> Output:
            model.zero_grad(set_to_none=True)
            for t in _tensors(batch):  # the positions' gradient must not accumulate
                t.grad = None
            out = self.call(model, batch, workload)
            energy = out.energy.to(torch.float64).reshape(-1) / atoms
            loss = energy.square().mean() + FORCE_WEIGHT * out.forces.square().mean()
            loss.backward()
            return out

        step.model = model
        return step


def _tensors(batch: Any) -> list[torch.Tensor]:
    """The tensors of a batch that is a dict or a tuple (none of any other)."""
    if isinstance(batch, dict):
        batch = list(batch.values())
    if not isinstance(batch, (tuple, list)):
        return []
    return [t for t in batch if torch.is_tensor(t)]


@dataclass(frozen=True, eq=False)
class Case:
    """One adapter on one workload."""

    adapter: Adapter
    workload: Workload

    @property
    def name(self) -> str:
        return self.adapter.name

    def why_not(self) -> str | None:
        """Why this case cannot run here, or None."""
        if self.workload.task not in self.adapter.tasks:
            return f"{self.name} does not run {TASKS[self.workload.task]}"
        return self.adapter.missing()


def cases_of(adapters: Sequence[Adapter], workloads: Sequence[Workload]) -> list[Case]:
    """Every adapter on every workload, workload by workload."""
    return [Case(a, w) for w in workloads for a in adapters]


# ----------------------------------------------------------------------------- time


def time_interleaved(
    calls: dict[Any, Callable], repeats: int, warmup: int = 2, min_seconds: float = 0.0
) -> dict:
    """Median seconds per call of each function, calls interleaved so machine drift cancels.

    At least ``repeats`` rounds, and more where the slowest call is cheap: enough rounds for
    that call to take ``min_seconds`` in all (its last warm-up call sets the count), so that
    the medians of cheap calls rest on as many samples as a noisy machine needs.
    """
    slowest = 0.0
    for fn in calls.values():
        for k in range(warmup):
            start = time.perf_counter()
            fn()
            if k == warmup - 1:  # the last warm-up call, the cache warm
                slowest = max(slowest, time.perf_counter() - start)
    if min_seconds > 0 and slowest > 0:
        repeats = max(repeats, math.ceil(min_seconds / slowest))
    samples: dict[Any, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


@dataclass
class Result:
    """What was measured of one case: median seconds per call, or a note saying why not;
    its peak memory (a :func:`peak_memory` dict) where measured."""

    case: Case
    seconds: float | None = None
    note: str = ""
    memory: dict | None = None


def _by_workload(results: list[Result]) -> list[list[Result]]:
    """``results`` grouped by their workload (the same object), in their order."""
    groups: dict[int, list[Result]] = {}
    for result in results:
        groups.setdefault(id(result.case.workload), []).append(result)
    return list(groups.values())


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:100] if text else ''}"


def time_cases(
    cases: Sequence[Case],
    repeats: int,
    warmup: int = 1,
    min_seconds: float = 0.0,
    max_call_seconds: float | None = None,
    child: dict | None = None,
) -> list[Result]:
    """Time ``cases``, the cases of each workload interleaved.

    Every case is prepared and called once first (lazily built tables; not counted), then
    ``warmup`` more calls and the timed rounds of :func:`time_interleaved`. A case that
    cannot run here, fails, or whose first call takes over ``max_call_seconds`` is not timed:
    its result says why.

    In this process, or with ``child`` (the keywords of :func:`run_in_child`) each workload
    in a child process of its own. Where that child fails (killed above the memory limit,
    say), each of its cases is timed alone in a child of its own, so that the others still
    get their times; their results say so.
    """
    results = [Result(case) for case in cases]
    options = (repeats, warmup, min_seconds, max_call_seconds)
    for group in _by_workload(results):
        if child is None:
            _time_group(group, *options)
            continue
        out = run_in_child(_time_job, [r.case for r in group], *options, **child)
        for k, result in enumerate(group):
            if "failed" not in out:
                value = out["value"][k]
            elif len(group) == 1:
                value = [None, out["failed"]]
            else:
                alone = run_in_child(_time_job, [result.case], *options, **child)
                value = [None, alone["failed"]] if "failed" in alone else alone["value"][0]
                if value[0] is not None:
                    value[1] = value[1] or f"timed alone ({out['failed']} interleaved)"
            result.seconds, result.note = value
    return results


def _time_group(group: list[Result], repeats, warmup, min_seconds, max_call_seconds) -> None:
    """Time the cases of one workload in this process (:func:`time_cases`)."""
    calls = {}
    for k, result in enumerate(group):
        result.note = result.case.why_not() or ""
        if result.note:
            continue
        try:
            fn = result.case.adapter.prepare(result.case.workload)
            start = time.perf_counter()
            fn()
            seconds = time.perf_counter() - start
        except Exception as err:  # a case that cannot run is reported, not fatal
            result.note = _first_line(err)
            continue
        if max_call_seconds is not None and seconds > max_call_seconds:
            result.note = f"first call {seconds:.0f} s (over {max_call_seconds:g} s), not timed"
            continue
        calls[k] = fn
    if calls:
        times = time_interleaved(calls, repeats, warmup=warmup, min_seconds=min_seconds)
        for k, seconds in times.items():
            group[k].seconds = seconds


def _time_job(cases, repeats, warmup, min_seconds, max_call_seconds) -> list:
    """:func:`time_cases` in a child process: ``[seconds or None, note]`` per case."""
    results = time_cases(cases, repeats, warmup, min_seconds, max_call_seconds)
    return [[r.seconds, r.note] for r in results]


# ----------------------------------------------------------------------------- memory


def _status_mib(field: str, pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5); return the current RSS (MiB)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (MiB)."""
    return _status_mib("VmHWM")


def available_gib() -> float:
    """The machine's available memory (``MemAvailable``), GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return float(line.split()[1]) / 2**20
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def _memory_job(case: Case, calls: int) -> dict:
    """In a child: prepare, one warm-up call, then ``calls`` measured calls (MiB)."""
    why = case.why_not()
    if why:
        return {"failed": why}
    fn = case.adapter.prepare(case.workload)
    fn()  # the first call builds lazy tables; in the process's peak, not in the calls'
    lifetime = peak_rss_mib()
    before = reset_peak_rss()
    for _ in range(calls):
        fn()
    peak = peak_rss_mib()
    return {"before": before, "peak": peak, "process_peak": max(peak, lifetime)}


def peak_memory(case: Case, calls: int = 3, **child: Any) -> dict:
    """Peak resident memory (MiB) of ``case`` in a fresh process (:func:`run_in_child`,
    whose keywords ``child`` takes).

    ``process_peak``: the high-water mark over the process's life (imports, model, batch, a
    warm-up call and the measured calls); ``before``: the resident memory before the measured
    calls; ``peak``: their high-water mark. A child that failed or was killed gives
    ``{"failed": ...}`` (and ``killed_gib``).
    """
    out = run_in_child(_memory_job, case, calls, **child)
    return out if "failed" in out else out["value"]


def extra_mib(memory: dict | None) -> float | None:
    """The measured calls' peak minus the resident memory before them (MiB)."""
    if not memory or "failed" in memory:
        return None
    return memory["peak"] - memory["before"]


# ----------------------------------------------------------------------------- child processes


def run_in_child(
    function: Callable,
    *args: Any,
    limit_gib: float | None = None,
    timeout: float | None = None,
    threads: int | None = None,
    retain_memory: bool = False,
    address_space_gib: float | None = None,
) -> dict:
    """``function(*args)`` in a fresh Python process; ``{"value": its result}`` (JSON).

    ``function`` is a module-level function, found in the child by its module (or, for the
    running script, its file) on the parent's ``sys.path``; ``args`` are pickled. The child
    sets ``threads`` torch threads and, with ``retain_memory``, keeps freed memory
    (:func:`tensorpot.allocator.retain_freed_memory`). The parent polls the child's resident
    memory and kills it above ``limit_gib`` (``{"failed": "> X GiB (killed)", "killed_gib":
    X}``) or after ``timeout`` seconds. ``address_space_gib`` caps the child's address space
    instead (an allocation beyond it fails in the child: ``{"failed": "out of memory ..."}``).
    Any other failure gives ``{"failed": <its last error line>}``.
    """
    module = function.__module__
    main = sys.modules.get(module)
    job = {
        "sys_path": list(sys.path),
        "module": module,
        "file": getattr(main, "__file__", None) if module == "__main__" else None,
        "name": function.__qualname__,
        "args": pickle.dumps(args),  # unpickled once the child has the parent's sys.path
        "threads": threads or torch.get_num_threads(),
        "retain_memory": retain_memory,
        "address_space_gib": address_space_gib,
    }
    with tempfile.TemporaryDirectory(prefix="tensorpot-bench-") as folder:
        job_path, out_path, err_path = (Path(folder) / n for n in ("job.pkl", "out", "err"))
        job_path.write_bytes(pickle.dumps(job))
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tensorpot.benchmarking.child", str(job_path)],
                stdout=out,
                stderr=err,
            )
            stopped = _watch(proc, limit_gib, timeout)
        stdout, stderr = out_path.read_text(), err_path.read_text()
    if stopped:
        return stopped
    if proc.returncode != 0:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if any(s in stderr for s in ("not enough memory", "can't allocate", "MemoryError")):
            cap = f" (address space {address_space_gib:g} GiB)" if address_space_gib else ""
            return {"failed": f"out of memory{cap}"}
        if proc.returncode < 0:
            return {"failed": f"killed by signal {-proc.returncode}"}
        return {"failed": f"exit {proc.returncode}: {lines[-1][:120] if lines else ''}"}
    return {"value": json.loads(stdout.strip().splitlines()[-1])}


def _watch(proc: subprocess.Popen, limit_gib: float | None, timeout: float | None) -> dict:
    """Wait for ``proc``, killing it above ``limit_gib`` resident or after ``timeout`` s."""
    start = time.monotonic()
    limit_mib = None if limit_gib is None else limit_gib * 1024.0
    while proc.poll() is None:
        if limit_mib is not None:
            try:
                rss = _status_mib("VmRSS", proc.pid)
            except (OSError, RuntimeError):  # the process is ending
                rss = 0.0
            if rss > limit_mib:
                proc.kill()
                proc.wait()
                return {"failed": f"> {limit_gib:g} GiB (killed)", "killed_gib": limit_gib}
        if timeout is not None and time.monotonic() - start > timeout:
            proc.kill()
            proc.wait()
            return {"failed": f"over {timeout:g} s (killed)"}
        time.sleep(0.01)
    return {}


def child_main(job_path: str) -> None:
    """The child's side of :func:`run_in_child`: run the job, print its JSON result."""
    job = pickle.loads(Path(job_path).read_bytes())
    if job["address_space_gib"]:
        limit = int(job["address_space_gib"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path[:] = job["sys_path"]
    torch.set_num_threads(job["threads"])
    if job["retain_memory"]:
        from tensorpot.allocator import retain_freed_memory

        retain_freed_memory()
    if job["file"] is not None:  # the parent's script, imported without running its main
        spec = importlib.util.spec_from_file_location("_benchmark_script", job["file"])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(job["module"])
    function = module
    for part in job["name"].split("."):
        function = getattr(function, part)
    value = function(*pickle.loads(job["args"]))
    print(json.dumps(value))


# ----------------------------------------------------------------------------- running, reporting


def measure(
    cases: Sequence[Case],
    repeats: int,
    *,
    warmup: int = 1,
    min_seconds: float = 0.0,
    memory: Callable[[Case], bool] | None = None,
    memory_calls: int = 3,
    isolate: bool = False,
    **child: Any,
) -> list[Result]:
    """Time every case (in this process, or with ``isolate`` each workload in a child) and
    measure the peak memory of those that ``memory`` selects, each in a child process."""
    results = time_cases(cases, repeats, warmup, min_seconds, child=child if isolate else None)
    for result in results:
        if memory is not None and memory(result.case) and not result.case.why_not():
            result.memory = peak_memory(result.case, memory_calls, **child)
    return results


def machine_line(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads"


@dataclass
class Table:
    """A Markdown table under construction."""

    head: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = ["| " + " | ".join(self.head) + " |", "|" + "---|" * len(self.head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "–"


def _mib(memory: dict | None, key: str) -> str:
    if memory is None:
        return "–"
    if "failed" in memory:
        return memory["failed"] if key == "process_peak" else "–"
    value = memory[key] if key != "extra" else extra_mib(memory)
    return f"{value:.1f}"


def report(results: Sequence[Result], ratios: Sequence[tuple[str, str]] = ()) -> str:
    """The time table (ms per structure; a row per workload, a column per model, then the
    ratios ``a / b`` of ``ratios``), the memory table where any was measured, and the notes
    of the cases that were not timed."""
    workloads = list({id(r.case.workload): r.case.workload for r in results}.values())
    models = list(dict.fromkeys(r.case.name for r in results))
    by = {(id(r.case.workload), r.case.name): r for r in results}
    pairs = [(a, b) for a, b in ratios if a in models and b in models]
    times = Table(["workload", "atoms", *models, *(f"{a} / {b}" for a, b in pairs)])
    for w in workloads:
        ms = {}
        for m in models:
            r = by.get((id(w), m))
            ms[m] = None if r is None or r.seconds is None else 1e3 * r.seconds / w.batch
        cells = ["–" if ms[m] is None else f"{ms[m]:.2f}" for m in models]
        times.rows.append(
            [w.label, str(w.atoms), *cells, *(_ratio(ms[a], ms[b]) for a, b in pairs)]
        )
    out = ["ms per structure:", "", str(times)]
    measured = [r for r in results if r.memory is not None]
    if measured:
        memory = Table(["workload", "model", "peak RSS of the process (MiB)",
                        "extra during the calls (MiB)"])  # fmt: skip
        for w in workloads:
            rows = {r.case.name: r.memory for r in measured if r.case.workload is w}
            for k, (m, mem) in enumerate(rows.items()):
                label = w.label if k == 0 else ""
                memory.rows.append([label, m, _mib(mem, "process_peak"), _mib(mem, "extra")])
            for a, b in pairs:
                if a in rows and b in rows:
                    peak = [rows[m].get("process_peak") for m in (a, b)]
                    extra = [extra_mib(rows[m]) for m in (a, b)]
                    memory.rows.append(["", f"ratio {a} / {b}", _ratio(*peak), _ratio(*extra)])
        out += ["", "peak memory, each model in a fresh process:", "", str(memory)]
    notes = [f"- {r.case.name}, {r.case.workload.label}: {r.note}" for r in results if r.note]
    if notes:
        out += ["", *notes]
    return "\n".join(out)
