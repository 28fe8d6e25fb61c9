"""Is another process using the cores a timing runs on?

A latency measured while other processes compete for the same cores can be 10-100x too slow
(OpenMP threads of a training job preempting ONNX Runtime's), and a cached outlier would stay on
the front. ``foreign_load`` reads the kernel's per-core counters (``/proc/stat``) over a short
window and subtracts this process's own CPU time (``/proc/self/stat``), so it sees only *other*
processes. It is Linux-only; elsewhere it reports 0 (no check).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["foreign_load", "cpu_times", "own_ticks"]

_STAT = Path("/proc/stat")
_SELF = Path("/proc/self/stat")


def cpu_times(cores: Sequence[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over ``cores``; None where /proc/stat is unreadable."""
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    want = {f"cpu{c}" for c in cores}
    busy = total = 0
    for line in lines:
        parts = line.split()
        if not parts or parts[0] not in want:
            continue
        ticks = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + ticks[4]
        total += sum(ticks)
        busy += sum(ticks) - idle
    return (busy, total) if total else None


def own_ticks() -> int:
    """This process's user + system clock ticks, all threads."""
    try:
        # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        fields = _SELF.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def foreign_load(cores: Sequence[int] | None = None, seconds: float = 0.05) -> float:
    """Share (0..1) of ``cores``' time that *other* processes used over ``seconds``.

    ``cores`` defaults to the cores this process may run on. The window is sampled while this
    process sleeps, so its own threads count only if they spin; their ticks are subtracted.
    The counters tick at 100 Hz: over 0.05 s on 2 cores the resolution is 10%.
    """
    if cores is None:
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    a, own_a = cpu_times(cores), own_ticks()
    if a is None:
        return 0.0
    time.sleep(seconds)
    b, own_b = cpu_times(cores), own_ticks()
    if b is None or b[1] <= a[1]:
        return 0.0
    busy = (b[0] - a[0]) - (own_b - own_a)
    return min(1.0, max(0.0, busy / (b[1] - a[1])))
