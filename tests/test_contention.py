"""The contention probe and what a timing on busy cores does (Linux /proc counters).

Each test starts real busy-loop processes on the cores a measurement pins to, so the probe
reads real kernel counters; nothing is mocked except the retry count (to skip the back-off).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
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


def test_probe_sees_other_processes_but_not_this_one() -> None:
    core = _cores()[:1]
    with busy(core):
        seen = foreign_load(core, seconds=0.3)
    assert seen > 0.6, seen
    # A thread of this process spinning on the same core is not "foreign".
    stop = threading.Event()

    def spin() -> None:
        os.sched_setaffinity(0, set(core))  # pins this thread only
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.2)
        own = foreign_load(core, seconds=0.3)
    finally:
        stop.set()
        t.join()
    assert own < 0.4, own


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


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_timing_moves_to_the_core_other_processes_leave_free(tmp_path) -> None:
    busy_core, free_core = _cores()[:2]
    with busy([busy_core]):
        chosen, load = quietest_cores(1, [busy_core, free_core], seconds=0.3)
        assert chosen == [free_core] and load < 0.5
        seen: list[set[int]] = []
        value = time_runner(lambda x: seen.append(os.sched_getaffinity(0)), np.ones((1, 4)),
                            np.ones((8, 4)), cache=MeasureCache(tmp_path / "m.sqlite"),
                            threads=1, runs=5, warmup=1, max_foreign_load=0.9)
    assert seen and all(s == {free_core} for s in seen)
    assert "latency_contended" not in value
    assert os.sched_getaffinity(0) == set(_cores())  # restored after the timing
