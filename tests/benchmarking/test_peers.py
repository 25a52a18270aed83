"""The interleaved timer of the benchmarks: how many calls it makes (not how fast they are)."""

from __future__ import annotations

import pytest

from tensorpot.benchmarking import peers
from tensorpot.benchmarking.peers import time_interleaved


@pytest.fixture
def clock(monkeypatch):
    """``time.perf_counter`` as a clock that only the counted calls move (by their ``seconds``),
    so that the counts do not depend on how busy the machine is."""
    now = [0.0]
    monkeypatch.setattr(peers.time, "perf_counter", lambda: now[0])
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
