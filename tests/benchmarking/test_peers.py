"""The interleaved timer of the benchmarks: how many calls it makes (not how fast they are)."""

from __future__ import annotations

import time

from tensorpot.benchmarking.peers import time_interleaved


def counting(counts: dict, name: str, seconds: float = 0.0):
    def fn():
        counts[name] = counts.get(name, 0) + 1
        time.sleep(seconds)

    return fn


def test_repeats_and_warmup_of_every_call():
    counts = {}
    out = time_interleaved({"a": counting(counts, "a"), "b": counting(counts, "b")}, 4, warmup=2)
    assert counts == {"a": 6, "b": 6}
    assert set(out) == {"a", "b"} and all(t >= 0 for t in out.values())


def test_cheap_calls_get_more_rounds_for_min_seconds():
    counts = {}
    calls = {"fast": counting(counts, "fast"), "slow": counting(counts, "slow", 0.01)}
    time_interleaved(calls, 2, warmup=1, min_seconds=0.5)
    # the slowest call (a sleep of at least 10 ms) sets the rounds: at most 50, and far more
    # than the 2 asked for unless a 10 ms sleep took over 50 ms
    assert 11 <= counts["slow"] <= 51 and counts["fast"] == counts["slow"]
