"""The contention probe and what a timing on busy cores does (Linux /proc counters).

The probe's arithmetic and the retry logic are tested with scripted counter readings, so no
test depends on how busy the machine is. Two tests start real busy-loop processes and assert
only what holds however loaded the machine already is (a busy core reads as busy).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from jointopt.cost import latency
from jointopt.cost.contention import foreign_load, quietest_cores
from jointopt.cost.latency import MeasureCache, store_timing, time_runner

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file() or
                                not hasattr(os, "sched_getaffinity"),
                                reason="needs Linux /proc/stat and CPU affinity")

SPIN = ("import os, sys, time\n"
        "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
        "end = time.time() + 60\n"
        "while time.time() < end: pass\n")


@contextlib.contextmanager
def busy(cores: list[int]) -> Iterator[None]:
    """One spinning process pinned to each of ``cores`` (killed on exit, 60 s at most)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(c)]) for c in cores]
    try:
        time.sleep(0.5)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


class Scripted:
    """Stands in for /proc/stat or /proc/self/stat: each read returns the next text."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    def read_text(self) -> str:
        return self.texts.pop(0)


def _stat(*busy_idle: tuple[int, int]) -> str:
    """A /proc/stat with one line per core: user=busy, idle=idle (other fields 0)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {b} 0 0 {idle} 0 0 0 0 0 0" for i, (b, idle) in enumerate(busy_idle)]
    return "\n".join(lines) + "\n"


def _self_stat(ticks: int) -> str:
    # pid (comm with a space) state + fields; utime and stime are the 12th/13th after ')'
    rest = ["S"] + ["0"] * 10 + [str(ticks), "0"] + ["0"] * 30
    return "1234 (python worker) " + " ".join(rest)


def test_probe_subtracts_this_process_and_ranks_cores(monkeypatch) -> None:
    from jointopt.cost import contention

    monkeypatch.setattr(contention.time, "sleep", lambda s: None)
    # Over the window: core 0 busy 9 of 10 ticks, core 1 busy 1 of 10; this process used 0.
    monkeypatch.setattr(contention, "_STAT", Scripted(_stat((0, 0), (0, 0)),
                                                      _stat((9, 1), (1, 9))))
    monkeypatch.setattr(contention, "_SELF", Scripted(_self_stat(0), _self_stat(0)))
    chosen, load = quietest_cores(1, [0, 1])
    assert chosen == [1] and load == pytest.approx(0.1)
    # Both cores, and this process's own threads used 8 of the 10 busy ticks: not foreign.
    monkeypatch.setattr(contention, "_STAT", Scripted(_stat((0, 0), (0, 0)),
                                                      _stat((9, 1), (1, 9))))
    monkeypatch.setattr(contention, "_SELF", Scripted(_self_stat(100), _self_stat(108)))
    assert foreign_load([0, 1]) == pytest.approx(0.1)
    # Unreadable counters (not Linux): no load, no check.
    monkeypatch.setattr(contention, "_STAT", Path("/nonexistent/stat"))
    assert quietest_cores(1, [0, 1]) == ([0], 0.0)


def test_probe_sees_a_busy_process_on_the_real_kernel() -> None:
    # Holds however loaded the machine is: the core is busy either way, and not with us.
    core = _cores()[:1]
    with busy(core):
        seen = foreign_load(core, seconds=0.3)
    assert seen > 0.6, seen


def test_contended_timing_is_flagged_and_not_cached(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(latency, "CONTENTION_ATTEMPTS", 1)
    cache = MeasureCache(tmp_path / "m.sqlite")
    x1, xb = np.ones((1, 4), np.float32), np.ones((8, 4), np.float32)
    threads = len(_cores())
    with busy(_cores()):
        value = time_runner(lambda x: x.sum(), x1, xb, cache=cache, threads=threads, runs=20,
                            warmup=2, max_foreign_load=0.25)
    assert value["latency_contended"] > 0.25
    out = store_timing(cache, "k", value, "onnxruntime-fp32")
    assert out["latency_contended"] == value["latency_contended"]
    assert cache.get("k") is None  # measured again next time
    # With the check off, the same busy cores give a plain, cached timing.
    with busy(_cores()):
        value = time_runner(lambda x: x.sum(), x1, xb, cache=cache, threads=threads, runs=20,
                            warmup=2, max_foreign_load=1.0)
    assert "latency_contended" not in value
    store_timing(cache, "k", value, "onnxruntime-fp32")
    assert cache.get("k") == value


def test_timing_is_repeated_until_the_cores_quiet_down(tmp_path, monkeypatch) -> None:
    # The probe's readings are scripted here (the real probe is tested above): busy before the
    # first timing, quiet around the second.
    readings = iter([0.9, 0.9, 0.0, 0.0])
    monkeypatch.setattr(latency, "quietest_cores", lambda k, cores: (cores[:k], next(readings)))
    monkeypatch.setattr(latency, "foreign_load", lambda cores: next(readings))
    slept: list[float] = []
    monkeypatch.setattr(latency.time, "sleep", slept.append)
    calls: list[int] = []

    def run(x: np.ndarray) -> float:
        calls.append(len(x))
        return float(x.sum())

    cache = MeasureCache(tmp_path / "m.sqlite")
    value = time_runner(run, np.ones((1, 4), np.float32), np.ones((8, 4), np.float32),
                        cache=cache, threads=1, runs=10, warmup=2, max_foreign_load=0.25)
    assert "latency_contended" not in value and value["throughput_ips"] > 0
    assert slept == [1.0]
    # two attempts, each 2 + 10 batch-1 calls, then max(1, 1) + max(3, 2) batch calls
    assert calls.count(1) == 24 and calls.count(8) == 8


def test_timing_moves_to_the_core_other_processes_leave_free(tmp_path, monkeypatch) -> None:
    # The probe's readings are injected (a real probe on a loaded machine sees no free core):
    # core 1 is the quiet one, and it stays quiet during the timing.
    asked: list[list[int]] = []

    def probe(k: int, cores: list[int]) -> tuple[list[int], float]:
        asked.append(list(cores))
        return [cores[-1]], 0.0

    monkeypatch.setattr(latency, "quietest_cores", probe)
    monkeypatch.setattr(latency, "foreign_load", lambda cores: 0.0)
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    value = time_runner(lambda x: seen.append(os.sched_getaffinity(0)), np.ones((1, 4)),
                        np.ones((8, 4)), cache=MeasureCache(tmp_path / "m.sqlite"),
                        threads=1, runs=5, warmup=1, max_foreign_load=0.9)
    free = sorted(before)[-1]
    assert asked == [sorted(before)]  # every allowed core is a candidate
    assert seen and all(s == {free} for s in seen)
    assert "latency_contended" not in value
    assert os.sched_getaffinity(0) == before  # restored after the timing
