"""Is another process using the cores a timing runs on, and which cores are quietest?

A latency measured while other processes compete for the same cores can be 10-100x too slow
(OpenMP threads of a training job preempting ONNX Runtime's), and a cached outlier would stay on
the front. The kernel's per-core counters (``/proc/stat``) are read over a short window and this
process's own CPU time (``/proc/self/stat``) is subtracted, so only *other* processes count.
Linux-only; elsewhere the probes report no load (no check).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["foreign_load", "quietest_cores", "core_ticks", "own_ticks"]

_STAT = Path("/proc/stat")
_SELF = Path("/proc/self/stat")


def core_ticks(cores: Sequence[int]) -> dict[int, tuple[int, int]] | None:
    """{core: (busy, total) clock ticks}; None where /proc/stat is unreadable."""
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    want = {f"cpu{c}": c for c in cores}
    out: dict[int, tuple[int, int]] = {}
    for line in lines:
        parts = line.split()
        if not parts or parts[0] not in want:
            continue
        ticks = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
        out[want[parts[0]]] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    return out or None


def own_ticks() -> int:
    """This process's user + system clock ticks, all threads."""
    try:
        # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
        fields = _SELF.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))


def _allowed() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def quietest_cores(k: int, cores: Sequence[int] | None = None, seconds: float = 0.05
                   ) -> tuple[list[int], float]:
    """The ``k`` least busy of ``cores`` (default: those this process may use) over
    ``seconds``, and the share (0..1) of those cores' time that other processes used.

    The window is sampled while this process sleeps, so its own threads count only if they spin;
    their ticks are subtracted (all of them, from the chosen cores: where they ran is unknown).
    The counters tick at 100 Hz: over 0.05 s on 2 cores the resolution is 10%.
    """
    cores = list(cores) if cores is not None else _allowed()
    a, own_a = core_ticks(cores), own_ticks()
    if a is None:
        return cores[:k] or cores, 0.0
    time.sleep(seconds)
    b, own_b = core_ticks(cores), own_ticks()
    if b is None:
        return cores[:k] or cores, 0.0
    common = [c for c in cores if c in a and c in b]
    busy = {c: b[c][0] - a[c][0] for c in common}
    total = {c: b[c][1] - a[c][1] for c in common}
    # Least busy share first; ties keep the lower core number (sorted() is stable).
    chosen = sorted(common, key=lambda c: busy[c] / total[c] if total[c] > 0 else 0.0)[:k]
    tot = sum(total[c] for c in chosen)
    if not chosen or tot <= 0:
        return cores[:k] or cores, 0.0
    foreign = sum(busy[c] for c in chosen) - (own_b - own_a)
    return sorted(chosen), min(1.0, max(0.0, foreign / tot))


def foreign_load(cores: Sequence[int] | None = None, seconds: float = 0.05) -> float:
    """Share (0..1) of ``cores``' time (default: all this process may use) that other processes
    used over ``seconds``."""
    cores = list(cores) if cores is not None else _allowed()
    return quietest_cores(len(cores), cores, seconds)[1]
