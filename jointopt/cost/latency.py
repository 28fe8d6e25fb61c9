"""Measured latency and throughput on a runtime that really executes the config's precision.

* fp32 (and weight-only integer configs, whose weights are dequantized to float): ONNX Runtime.
* integer weights and activations: ONNX Runtime running integer kernels (``jointopt.quant``).
  ONNX Runtime's CPU kernels are int8; 6/4/3/2-bit configs run on that nearest precision.
* fp16: this class of CPU has no fp16 matrix kernels (ONNX Runtime casts to fp32 around them and
  PyTorch's CPU fp16 matmul is slower than fp32), so 16-bit float is timed in PyTorch bfloat16,
  the 16-bit float format the CPU executes natively (AVX512-BF16 / AMX).

``latency_runtime`` names what ran, with "(nearest to ...)" where it is not the config's own
precision. One measurement at a time per machine (a file lock), a fixed thread count, and a
cache shared across processes so nothing is measured twice. A timing taken while other processes
kept the pinned cores busy (``jointopt.cost.contention``) is repeated, and if the cores never
quieted it is returned flagged (``latency_contended``) and not cached.
"""

from __future__ import annotations

import contextlib
import copy
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
from jointopt.space import JointConfig

__all__ = ["MeasureCache", "machine_id", "measurement_lock", "runtime_for", "OnnxRuntimeLatency",
           "median_time", "default_cache_path", "time_runner", "store_timing",
           "CONTENTION_ATTEMPTS"]


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
             f"ort{onnxruntime.__version__}"]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


class MeasureCache:
    """A small SQLite table of measurements, safe to share between processes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS m (key TEXT PRIMARY KEY, value TEXT, t REAL)")

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


def runtime_for(cfg: JointConfig) -> tuple[str, str]:
    """(runtime that executes cfg on this CPU, the name reported in ``latency_runtime``)."""
    w, a = cfg.w_bits, cfg.a_bits
    if w < 16 and a < 16:
        name = "onnxruntime-int8"
        return name, name if (w, a) == (8, 8) else f"{name} (nearest to w{w}a{a})"
    if w < 16:  # weight-only: weights dequantized, float activations
        return "onnxruntime-fp32", f"onnxruntime-fp32 (nearest to w{w}a{a}, weights dequantized)"
    if min(w, a) == 16:
        return "torch-bf16", "torch-bf16 (nearest to fp16: no fp16 kernels on this CPU)"
    return "onnxruntime-fp32", "onnxruntime-fp32"


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


@register_cost_model("latency", "onnxruntime")
class OnnxRuntimeLatency:
    """Batch-1 median latency and batch-B throughput on this machine's CPU."""

    def __init__(self, cache: MeasureCache | None = None) -> None:
        self.cache = cache

    def _runner(self, ctx: EvalContext, runtime: str, workdir: Path
                ) -> Callable[[np.ndarray], Any]:
        from jointopt import quant

        s = ctx.shape
        example = torch.zeros(1, ctx.in_chans, s.img_size, s.img_size)
        if runtime == "torch-bf16":
            assert ctx.float_model is not None
            model = copy.deepcopy(ctx.float_model).to(torch.bfloat16).eval()

            def run_torch(x: np.ndarray) -> Any:
                with torch.inference_mode():
                    return model(torch.from_numpy(x).to(torch.bfloat16))

            return run_torch
        if runtime == "onnxruntime-int8":
            assert ctx.quant_model is not None
            path = quant.export_int_onnx(ctx.quant_model, example, workdir / "model.onnx")
        else:
            assert ctx.float_model is not None
            path = quant.export_float_onnx(ctx.float_model, example, workdir / "model.onnx")
        sess = _ort_session(path, self._threads(ctx))
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})

    @staticmethod
    def _threads(ctx: EvalContext) -> int:
        n = getattr(ctx.settings, "threads", 0) if ctx.settings is not None else 0
        if n:
            return int(n)
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        runtime, label = runtime_for(ctx.cfg)
        threads = self._threads(ctx)
        runs = getattr(ctx.settings, "latency_runs", 20)
        warmup = getattr(ctx.settings, "warmup_runs", 5)
        timing_cfg = ctx.cfg.canonical()
        arch = f"{timing_cfg.key().rsplit('_', 1)[0]}_c{ctx.in_chans}k{ctx.num_classes}" \
               f"s{ctx.shape.img_size}p{ctx.shape.patch_size}hd{ctx.shape.head_dim}"
        key = f"{machine_id()}|{runtime}|{arch}|b{ctx.batch_size}|t{threads}|n{runs}"
        cache = self.cache or MeasureCache()
        hit = cache.get(key)
        if hit is not None:
            return {**hit, "latency_runtime": label, "latency_cached": True}
        s = ctx.shape
        rng = np.random.default_rng(0)
        x1 = rng.standard_normal((1, ctx.in_chans, s.img_size, s.img_size)).astype(np.float32)
        xb = rng.standard_normal((ctx.batch_size, ctx.in_chans, s.img_size, s.img_size)
                                 ).astype(np.float32)
        limit = float(getattr(ctx.settings, "max_foreign_load", 1.0))
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            run = self._runner(ctx, runtime, Path(tmp))
            value = time_runner(run, x1, xb, cache=cache, threads=threads, runs=runs,
                                warmup=warmup, max_foreign_load=limit)
        return store_timing(cache, key, value, label)
