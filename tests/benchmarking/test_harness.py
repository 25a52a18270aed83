"""The harness: workloads, interleaved timing (how many calls, in what order; never how fast),
notes for cases that cannot run, child processes under the memory watchdog, the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from tensorpot.benchmarking import harness
from tensorpot.benchmarking.harness import (
    Adapter,
    Case,
    Output,
    Result,
    Workload,
    time_cases,
    time_interleaved,
)
from tensorpot.errors import TensorPotError

CALLS: list[str] = []


def molecule(n: int = 3) -> Atoms:
    return Atoms("H" * n, positions=np.arange(3 * n, dtype=float).reshape(n, 3))


class Fake(Adapter):
    """A model that is one parameter; its calls are logged in CALLS."""

    tasks = ("energy", "forces", "train")

    def __init__(self, name: str, fail: bool = False, absent: str | None = None):
        self.name, self.fail, self.absent = name, fail, absent

    def missing(self):
        return self.absent

    def build(self, workload):
        if self.fail:
            raise RuntimeError("cannot build\nsecond line")
        return torch.nn.Linear(3, 1, dtype=workload.torch_dtype)

    def batch(self, model, workload):
        positions = np.concatenate([a.positions for a in workload.frames])
        return (torch.tensor(positions, dtype=workload.torch_dtype),)

    def call(self, model, batch, workload):
        CALLS.append(self.name)
        positions = batch[0].detach().requires_grad_(True)
        site = model(positions).sum()
        forces = -torch.autograd.grad(site, positions, create_graph=model.training)[0]
        return Output(site.reshape(1).repeat(workload.batch), forces)


@pytest.fixture
def clock(monkeypatch):
    """``time.perf_counter`` as a clock that only the counted calls move (by their ``seconds``),
    so that the counts do not depend on how busy the machine is."""
    now = [0.0]
    monkeypatch.setattr(harness.time, "perf_counter", lambda: now[0])
    return now


def counting(counts: dict, name: str, clock: list | None = None, seconds: float = 0.0):
    def fn():
        counts[name] = counts.get(name, 0) + 1
        if clock is not None:
            clock[0] += seconds

    return fn


def test_repeats_and_warmup_of_every_call():
    counts = {}
    out = time_interleaved({"a": counting(counts, "a"), "b": counting(counts, "b")}, 4, warmup=2)
    assert counts == {"a": 6, "b": 6}
    assert set(out) == {"a", "b"} and all(t >= 0 for t in out.values())


def test_cheap_calls_get_more_rounds_for_min_seconds(clock):
    counts = {}
    calls = {
        "fast": counting(counts, "fast", clock, 1 / 64),
        "slow": counting(counts, "slow", clock, 1 / 16),
    }
    out = time_interleaved(calls, 2, warmup=1, min_seconds=1.0)
    # the slowest call sets the rounds: 1 s / (1/16 s) = 16, after one warm-up call each
    assert counts == {"fast": 17, "slow": 17}
    assert out == {"fast": 1 / 64, "slow": 1 / 16}


def test_no_warmup():
    counts = {}
    out = time_interleaved({"a": counting(counts, "a")}, 3, warmup=0, min_seconds=1.0)
    assert counts == {"a": 3} and set(out) == {"a"}


def test_workload_checks_and_labels():
    w = Workload("h3", [molecule(), molecule(2)], "float32", "energy")
    assert (w.batch, w.atoms, w.elements, w.torch_dtype) == (2, 5, [1], torch.float32)
    assert w.label == "h3, batch 2, float32, E"
    with pytest.raises(ValueError, match="dtype"):
        Workload("x", [molecule()], "float16")
    with pytest.raises(ValueError, match="task"):
        Workload("x", [molecule()], task="hessian")
    with pytest.raises(ValueError, match="at least one"):
        Workload("x", [])


def test_cases_of_one_workload_are_interleaved_and_others_get_notes():
    CALLS.clear()
    one, two = Workload("a", [molecule()]), Workload("b", [molecule()], task="stress")
    cases = harness.cases_of(
        [Fake("x"), Fake("y"), Fake("broken", fail=True), Fake("absent", absent="not here")],
        [one, two],
    )
    results = time_cases(cases, repeats=3, warmup=1)
    timed = [(r.case.name, r.case.workload.name) for r in results if r.seconds is not None]
    assert timed == [("x", "a"), ("y", "a")]
    notes = {(r.case.name, r.case.workload.name): r.note for r in results if r.note}
    assert notes[("broken", "a")] == "RuntimeError: cannot build"
    assert notes[("absent", "a")] == "not here"
    assert notes[("x", "b")] == "x does not run E + F + S"
    # one first call and one warm-up call each, then the rounds alternate
    assert CALLS == ["x", "y", "x", "y"] + ["x", "y"] * 3


def test_a_slow_first_call_is_not_timed(clock):
    class Slow(Fake):
        def call(self, model, batch, workload):
            clock[0] += 5.0
            return super().call(model, batch, workload)

    (result,) = time_cases([Case(Slow("slow"), Workload("a", [molecule()]))], 2, max_call_seconds=1)
    assert result.seconds is None and "over 1 s" in result.note


def test_a_training_step_reaches_the_parameters():
    step = Fake("x").prepare(Workload("a", [molecule(), molecule()], task="train"))
    step()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in step.model.parameters())


def test_load_frames(tmp_path):
    path = tmp_path / "two.xyz"
    molecule().write(path)
    frames = harness.load_frames(path, 1)
    assert len(frames) == 1 and frames[0].calc is None
    with pytest.raises(TensorPotError, match="1 structures, 2 wanted"):
        harness.load_frames(path, 2)
    with pytest.raises(TensorPotError, match="no such structure file"):
        harness.load_frames(tmp_path / "nope.xyz", 1)
    coords = np.arange(18.0).reshape(2, 3, 3) * 2
    np.savez(tmp_path / "r.npz", coords=coords, nuclear_charges=[1, 1, 8], energies=[0.0, 1.0],
             forces=np.zeros((2, 3, 3)))  # fmt: skip
    (frame,) = harness.load_frames(tmp_path / "r.npz", 1)
    assert list(frame.numbers) == [1, 1, 8]


def test_report_has_ratios_missing_cells_killed_memory_and_notes():
    w = Workload("a", [molecule(), molecule()])
    x, y, z = Case(Fake("x"), w), Case(Fake("y"), w), Case(Fake("z"), w)
    results = [
        Result(x, 0.004, memory={"before": 10.0, "peak": 30.0, "process_peak": 100.0}),
        Result(y, 0.002, memory={"failed": "> 1 GiB (killed)", "killed_gib": 1.0}),
        Result(z, None, note="it broke"),
    ]
    text = harness.report(results, [("x", "y"), ("x", "z"), ("x", "absent")])
    assert "| workload | atoms | x | y | z | x / y | x / z |" in text
    assert "| a, batch 2, float64, E + F | 6 | 2.00 | 1.00 | – | 2.00 | – |" in text
    assert "| a, batch 2, float64, E + F | x | 100.0 | 20.0 |" in text
    assert "|  | y | > 1 GiB (killed) | – |" in text
    assert "|  | ratio x / y | – | – |" in text
    assert "- z, a, batch 2, float64, E + F: it broke" in text


def allocate(mib: int) -> int:
    """A child job: hold ``mib`` MiB for a while."""
    import time

    block = np.ones(mib * 2**17)
    time.sleep(5)
    return int(block.size)


def test_child_killed_above_the_memory_limit():
    base = harness.available_gib()
    assert base > 2.5, "this test needs 2.5 GiB free"
    out = harness.run_in_child(allocate, 1536, limit_gib=1.0, threads=1)
    assert out == {"failed": "> 1 GiB (killed)", "killed_gib": 1.0}


def test_child_out_of_its_address_space():
    out = harness.run_in_child(allocate, 1536, address_space_gib=1.2, threads=1)
    assert out == {"failed": "out of memory (address space 1.2 GiB)"}


def test_peak_memory_of_a_case_in_a_child():
    memory = harness.peak_memory(Case(Fake("x"), Workload("a", [molecule()])), calls=2, threads=1)
    assert memory["process_peak"] >= memory["peak"] >= memory["before"] > 0
    assert harness.extra_mib(memory) >= 0
    absent = harness.peak_memory(Case(Fake("x", absent="gone"), Workload("a", [molecule()])))
    assert absent == {"failed": "gone"}


def test_an_isolated_workload_whose_child_fails_is_timed_case_by_case(monkeypatch):
    calls = []

    def fake_child(function, cases, *options, **child):
        calls.append([c.name for c in cases])
        if len(cases) > 1 or cases[0].name == "big":
            return {"failed": "> 1 GiB (killed)", "killed_gib": 1.0}
        return {"value": [[0.5, ""]]}

    monkeypatch.setattr(harness, "run_in_child", fake_child)
    w = Workload("a", [molecule()])
    cases = [Case(Fake("small"), w), Case(Fake("big"), w)]
    results = harness.time_cases(cases, 2, child={"threads": 1})
    assert calls == [["small", "big"], ["small"], ["big"]]
    assert results[0].seconds == 0.5 and "timed alone" in results[0].note
    assert results[1].seconds is None and results[1].note == "> 1 GiB (killed)"


def test_child_killed_after_its_timeout():
    out = harness.run_in_child(allocate, 1, timeout=0.5, threads=1)
    assert out == {"failed": "over 0.5 s (killed)"}
