"""Pure helpers of the benchmarks: bootstrap intervals, ratios, target verdicts.

Nothing here imports jointopt or torch, so the tests of these helpers run in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_diff", "ratios", "RATIO_KEYS", "TARGET_KEYS",
           "verdict", "mean_std", "best_at_kept_accuracy", "joint_vs_best_other"]

# (metric, ratio name, smaller is better): a ratio > 1 always means "the pick is better".
RATIO_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("params", "params", True), ("macs", "macs", True), ("bitops", "bitops", True),
    ("model_bytes", "model_bytes", True), ("latency_ms", "latency", True),
    ("throughput_ips", "throughput", False), ("energy_mj", "energy", True),
)
#: The paper's headline: >= 10x in each of these.
TARGET_KEYS: tuple[str, ...] = ("throughput", "params", "macs", "energy")


def bootstrap_ci(correct: Sequence[bool] | np.ndarray, *, n_boot: int = 2000,
                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(accuracy, lower, upper): percentile bootstrap over resampled test predictions.

    ``correct`` holds one 0/1 entry per test image. The interval resamples images with
    replacement ``n_boot`` times; with few test images it is wide, which is the point.
    """
    c = np.asarray(correct, dtype=float).ravel()
    if c.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, c.size, size=(n_boot, c.size))
    means = c[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(c.mean()), float(lo), float(hi)


def paired_bootstrap_diff(correct_a: Sequence[bool] | np.ndarray,
                          correct_b: Sequence[bool] | np.ndarray, *, n_boot: int = 2000,
                          level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(acc_a - acc_b, lower, upper) resampling the same test images for both models."""
    a = np.asarray(correct_a, dtype=float).ravel()
    b = np.asarray(correct_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs predictions on the same images: "
                         f"{a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed) if a.size else (
        math.nan, math.nan, math.nan)


def ratios(pick: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """Improvement factors of ``pick`` over ``baseline`` (metric dicts), > 1 = pick better."""
    out: dict[str, float] = {}
    for key, name, smaller in RATIO_KEYS:
        p, b = pick.get(key), baseline.get(key)
        if not isinstance(p, (int, float)) or not isinstance(b, (int, float)):
            out[name] = math.nan
            continue
        num, den = (float(b), float(p)) if smaller else (float(p), float(b))
        out[name] = num / den if den > 0 and math.isfinite(num) and math.isfinite(den) \
            else math.nan
    return out


def verdict(ratio: float, target: float = 10.0) -> str:
    """Text for one ratio against the target: met, or missed by what factor."""
    if not math.isfinite(ratio):
        return "not measured"
    if ratio >= target:
        return f"met ({ratio:.1f}x >= {target:g}x)"
    return f"missed ({ratio:.2f}x; {target / ratio:.1f}x short of {target:g}x)"


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (0 for one value), count) of the finite values."""
    v = [float(x) for x in values if isinstance(x, (int, float)) and math.isfinite(x)]
    if not v:
        return math.nan, math.nan, 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def best_at_kept_accuracy(points: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any], *,
                          keys: Sequence[str] = ("latency_ms", "energy_mj"),
                          tolerance: float = 0.01) -> dict[str, float]:
    """Largest reduction factor (baseline / value) of each cost among the feasible points whose
    accuracy is at least the baseline's minus ``tolerance``; NaN where no point qualifies.

    Unlike a hypervolume, where a cost already cut to 3% of the baseline has little volume left
    to gain, this shows a further 6x cut (3% to 0.5%) as 6x.
    """
    floor = float(baseline["accuracy"]) - tolerance
    kept = [p for p in points if p.get("feasible", True) and _finite(p.get("accuracy"))
            and float(p["accuracy"]) >= floor - 1e-12]
    out: dict[str, float] = {}
    for key in keys:
        vals = [float(p[key]) for p in kept if _finite(p.get(key)) and float(p[key]) > 0]
        out[key] = float(baseline[key]) / min(vals) if vals else math.nan
    return out


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def joint_vs_best_other(cells: Sequence[Mapping[str, Any]], *, joint: str = "joint",
                        others: Sequence[str] = ("arch", "tokens", "bits", "staged"),
                        n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Seed-paired ratios of joint's hypervolume to the best other search's, per cell.

    ``cells``: ``{"name": str, "hv": {search: {seed: hv}}}``; a search with one run (the bits
    grid, keyed by any seed) is the same for every seed. Returns each cell's ratios and mean,
    the pooled mean over every (cell, seed) pair, its percentile-bootstrap 95% lower bound, and
    the smallest cell mean.
    """
    per_cell, pooled = {}, []
    for cell in cells:
        hv = cell["hv"]
        ratios_ = []
        for s, j in sorted(hv.get(joint, {}).items()):
            best = []
            for o in others:
                runs = hv.get(o, {})
                if s in runs:
                    best.append(runs[s])
                elif len(runs) == 1:
                    best.append(next(iter(runs.values())))
            if best and max(best) > 0:
                ratios_.append(j / max(best))
        per_cell[cell["name"]] = {"ratios": ratios_, "mean": float(np.mean(ratios_))
                                  if ratios_ else math.nan}
        pooled += ratios_
    out: dict[str, Any] = {"cells": per_cell, "pooled_mean": math.nan, "pooled_lower": math.nan,
                           "min_cell_mean": min((c["mean"] for c in per_cell.values()),
                                                default=math.nan), "n_pairs": len(pooled)}
    if pooled:
        v = np.asarray(pooled)
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
        out["pooled_mean"] = float(v.mean())
        out["pooled_lower"] = float(np.quantile(means, 0.025))
    return out
