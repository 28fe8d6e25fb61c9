"""Measured latency and throughput of the deployed model, on the runtime that executes it.

The config's precision plan (:mod:`jointopt.precision`) decides what the runtime executes:
float32, 16-bit float, int8 kernels or compressed weights. The ONNX graph of that plan
(:func:`jointopt.deploy.export_onnx`) is loaded on the study's runtime (:mod:`jointopt.runtimes`,
``evaluate.runtime``; OpenVINO by default) twice, for batch 1 and for the throughput batch, with
the same threads and options for every precision, so a precision's effect is not a runtime's.
``latency_runtime`` is the plan's label: what ran, e.g. ``openvino-int8``, with "(nearest ...)"
where a part runs at another width than the config names.

One measurement at a time per machine (a file lock), a fixed thread count, and a cache shared
across processes so nothing is measured twice. A timing taken while other processes kept the
pinned cores busy (``jointopt.cost.contention``) is repeated, and if the cores never quieted it
is returned flagged (``latency_contended``) and not cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jointopt.cost.contention import foreign_load, quietest_cores
from jointopt.cost.registry import EvalContext, register_cost_model
from jointopt.errors import UserError, clip

__all__ = ["MeasureCache", "machine_id", "measurement_lock", "MeasuredLatency", "eval_threads",
           "deployed_runner", "export_deployed", "timing_key", "median_time",
           "default_cache_path", "time_runner", "store_timing", "CONTENTION_ATTEMPTS"]


#: Measurements taken while other processes use the pinned cores (``evaluate.max_foreign_load``)
#: are repeated up to this many times, 1 s, then 2 s apart.
CONTENTION_ATTEMPTS = 3


def default_cache_path() -> Path:
    root = os.environ.get("JOINTOPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "jointopt")
    return Path(root) / "measurements.sqlite"


def machine_id() -> str:
    """CPU model, core count and runtime versions: a timing is only valid on the same."""
    import onnxruntime

    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    parts = [platform.node(), cpu, str(os.cpu_count()), f"torch{torch.__version__}",
             f"ort{onnxruntime.__version__}", f"ov{_ov_version()}"]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _ov_version() -> str:
    try:
        import openvino

        return str(openvino.get_version())
    except ImportError:  # pragma: no cover - openvino is a dependency
        return "none"


class MeasureCache:
    """A small SQLite table of measurements, safe to share between processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as c:
                c.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, value TEXT, "
                          "t REAL)")
        except (OSError, sqlite3.Error) as e:
            # A setting of this machine (on a cluster: of this node), not a fault of the run:
            # one line that names it, and no retry.
            where = (f"JOINTOPT_CACHE={clip(repr(os.environ['JOINTOPT_CACHE']))}"
                     if not path and os.environ.get("JOINTOPT_CACHE") else
                     f"measurement cache {clip(repr(str(self.path)))}")
            raise UserError(f"{where}: cannot create the measurement cache "
                            f"({type(e).__name__}: {clip(str(e))})") from None

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._conn() as c:
            row = c.execute("SELECT value FROM m WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO m VALUES (?, ?, ?)",
                      (key, json.dumps(value), time.time()))


@contextlib.contextmanager
def measurement_lock(cache: MeasureCache, threads: int) -> Iterator[list[int]]:
    """Hold the machine's measurement lock with the process pinned to ``threads`` cores.

    Yields the cores it pinned to (all allowed cores where affinity is not available).
    """
    lock_path = cache.path.with_suffix(".lock")
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        old_threads = torch.get_num_threads()
        old_aff = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        cores = list(range(os.cpu_count() or 1))
        try:
            if old_aff is not None:
                cores = sorted(os.sched_getaffinity(0))[:threads] or sorted(old_aff)
                os.sched_setaffinity(0, cores)
            torch.set_num_threads(threads)
            yield cores
        finally:
            torch.set_num_threads(old_threads)
            if old_aff is not None:
                os.sched_setaffinity(0, old_aff)
            fcntl.flock(fh, fcntl.LOCK_UN)


def median_time(fn: Callable[[], Any], runs: int, warmup: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` in seconds over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def time_runner(run: Callable[[np.ndarray], Any], x1: np.ndarray, xb: np.ndarray, *,
                cache: MeasureCache, threads: int, runs: int, warmup: int,
                max_foreign_load: float = 1.0) -> dict[str, Any]:
    """Median batch-1 latency and batch throughput of ``run`` under the measurement lock.

    With ``max_foreign_load`` < 1 the timing runs on the ``threads`` cores that other processes
    used least over a short probe (with fewer threads than cores, another worker's evaluation
    then keeps its own core), and those cores are probed again afterwards; while other processes
    used more than that share of them, the timing is repeated (up to ``CONTENTION_ATTEMPTS``
    times). If they never quieted, the result carries ``latency_contended`` (the share seen) and
    ``store_timing`` does not cache it.
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with measurement_lock(cache, threads) as cores:
        for attempt in range(CONTENTION_ATTEMPTS):
            load = 0.0
            if max_foreign_load < 1:
                cores, load = quietest_cores(threads, allowed or cores)
                if allowed is not None:
                    os.sched_setaffinity(0, cores)  # the lock restores the old affinity
            lat, _ = median_time(lambda: run(x1), runs, warmup)
            thr, _ = median_time(lambda: run(xb), max(3, runs // 4), max(1, warmup // 2))
            if max_foreign_load < 1:
                load = max(load, foreign_load(cores))
            if load <= max_foreign_load:
                break
            if attempt + 1 < CONTENTION_ATTEMPTS:
                time.sleep(attempt + 1.0)
    value: dict[str, Any] = {"latency_ms": lat * 1e3, "throughput_ips": len(xb) / thr}
    if load > max_foreign_load:
        value["latency_contended"] = round(load, 3)
    return value


def store_timing(cache: MeasureCache, key: str | None, value: dict[str, Any],
                 label: str) -> dict[str, Any]:
    """Cache a timing unless it was contended; return it as metrics."""
    if key is not None and "latency_contended" not in value:
        cache.put(key, value)
    return {**value, "latency_runtime": label, "latency_cached": False}


def eval_threads(settings: Any) -> int:
    """Threads of one evaluation: ``evaluate.threads``, or every core this process may use."""
    n = getattr(settings, "threads", 0) if settings is not None else 0
    if n:
        return int(n)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def export_deployed(ctx: EvalContext, path: Path) -> Path:
    """Write the ONNX graph of the context's plan to ``path``."""
    from jointopt.deploy import export_onnx

    float_model, quant_model = ctx.models()
    assert ctx.plan is not None and float_model is not None
    s = ctx.shape
    example = torch.zeros(1, ctx.in_chans, s.img_size, s.img_size)
    return export_onnx(ctx.plan, float_model, quant_model, example, path)


def deployed_runner(ctx: EvalContext, workdir: Path, batches: tuple[int, ...]
                    ) -> Callable[[np.ndarray], Any]:
    """Run the deployed model on the context's runtime, compiled once per batch size (side by
    side)."""
    from jointopt.runtimes import get_runtime, load_batches

    assert ctx.plan is not None
    runtime = get_runtime(ctx.plan.runtime)
    path = export_deployed(ctx, workdir / "model.onnx")
    runners = load_batches(runtime, path, ctx.plan, threads=eval_threads(ctx.settings),
                           batches=batches)
    return lambda x: runners[len(x)](x)


def timing_key(ctx: EvalContext, threads: int, runs: int) -> str:
    """Cache key of a timing: machine, runtime version, what ran, the architecture, batch,
    threads and run count (not the weights: timing does not depend on their values)."""
    from jointopt.runtimes import get_runtime

    assert ctx.plan is not None
    runtime = get_runtime(ctx.plan.runtime)
    cfg = ctx.cfg.canonical()
    arch = f"{cfg.key().rsplit('_', 1)[0]}_c{ctx.in_chans}k{ctx.num_classes}" \
           f"s{ctx.shape.img_size}p{ctx.shape.patch_size}hd{ctx.shape.head_dim}" \
           f"pool{ctx.shape.pool}io{ctx.io_bits}"
    if ctx.shape.stem != "patch":  # (patch-stem keys stay as they were: cached timings hold)
        arch += f"stem{ctx.shape.stem}{ctx.shape.stem_width}"
    return (f"{machine_id()}|{runtime.name}{runtime.version()}|{ctx.plan.label}|"
            f"{ctx.plan.precision}|{arch}|b{ctx.batch_size}|t{threads}|n{runs}")


@register_cost_model("latency", "measured")
class MeasuredLatency:
    """Batch-1 median latency and batch-B throughput of the deployed model on this machine."""

    def __init__(self, cache: MeasureCache | None = None) -> None:
        self.cache = cache

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        assert ctx.plan is not None
        threads = eval_threads(ctx.settings)
        runs = getattr(ctx.settings, "latency_runs", 20)
        warmup = getattr(ctx.settings, "warmup_runs", 5)
        key = timing_key(ctx, threads, runs)
        cache = self.cache or MeasureCache()
        hit = cache.get(key)
        if hit is not None:
            return {**hit, "latency_runtime": ctx.plan.label, "latency_cached": True}
        s = ctx.shape
        rng = np.random.default_rng(0)
        x1 = rng.standard_normal((1, ctx.in_chans, s.img_size, s.img_size)).astype(np.float32)
        xb = rng.standard_normal((ctx.batch_size, ctx.in_chans, s.img_size, s.img_size)
                                 ).astype(np.float32)
        limit = float(getattr(ctx.settings, "max_foreign_load", 1.0))
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            run = deployed_runner(ctx, Path(tmp), (1, ctx.batch_size))
            value = time_runner(run, x1, xb, cache=cache, threads=threads, runs=runs,
                                warmup=warmup, max_foreign_load=limit)
        return store_timing(cache, key, value, ctx.plan.label)
