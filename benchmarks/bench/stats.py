"""Pure helpers of the benchmarks: bootstrap intervals, ratios, target checks.

Nothing here imports jointopt or torch, so the tests of these helpers run in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "paired_bootstrap_diff", "ratios", "RATIO_KEYS", "TARGET_KEYS",
           "Check", "mean_std", "best_at_kept_accuracy", "joint_vs_best_other", "best_other_hv",
           "pick_member", "PICK_TOLERANCE", "cnn_targets", "CNN_TARGETS"]

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


def _paired(correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=float).ravel()
    b = np.asarray(correct_b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs predictions on the same images: "
                         f"{a.shape} vs {b.shape}")
    return a, b


def paired_bootstrap_diff(correct_a: Sequence[bool] | np.ndarray,
                          correct_b: Sequence[bool] | np.ndarray, *, n_boot: int = 2000,
                          level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(acc_a - acc_b, lower, upper) resampling the same test images for both models."""
    a, b = _paired(correct_a, correct_b)
    return bootstrap_ci(a - b, n_boot=n_boot, level=level, seed=seed) if a.size else (
        math.nan, math.nan, math.nan)


def _class_resamples(labels: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """For each class, ``n_boot`` resamples (with replacement) of its images' indices: a
    stratified bootstrap keeps every class at its count, so each replicate has every class."""
    rng = np.random.default_rng(seed)
    return [idx[rng.integers(0, idx.size, size=(n_boot, idx.size))]
            for idx in (np.flatnonzero(labels == c) for c in np.unique(labels))]


def balanced_bootstrap_ci(correct: Sequence[bool] | np.ndarray, labels: Sequence[int] | np.ndarray,
                          *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                          ) -> tuple[float, float, float]:
    """(balanced accuracy, lower, upper): the mean of the per-class recalls, with a percentile
    bootstrap that resamples images within each class."""
    c = np.asarray(correct, dtype=float).ravel()
    y = np.asarray(labels).ravel()
    if c.size == 0:
        return math.nan, math.nan, math.nan
    if c.shape != y.shape:
        raise ValueError(f"one label per prediction needed: {c.shape} vs {y.shape}")
    value = float(np.mean([c[y == k].mean() for k in np.unique(y)]))
    reps = np.mean([c[idx].mean(axis=1) for idx in _class_resamples(y, n_boot, seed)], axis=0)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return value, float(lo), float(hi)


def paired_balanced_diff(correct_a: Sequence[bool] | np.ndarray,
                         correct_b: Sequence[bool] | np.ndarray,
                         labels: Sequence[int] | np.ndarray, *, n_boot: int = 2000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(balanced acc of a - of b, lower, upper), resampling the same images for both models."""
    a, b = _paired(correct_a, correct_b)
    return balanced_bootstrap_ci(a - b, labels, n_boot=n_boot, level=level, seed=seed)


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


@dataclass(frozen=True)
class Check:
    """One target check, a table row of RESULTS.md: the measured value against its threshold.

    ``unit`` says how the value reads: ``"x"`` a ratio (a shortfall is the factor still
    missing), ``"pts"`` an accuracy difference as a fraction (a shortfall is the accuracy still
    missing), anything else a format spec for a plain number (a shortfall is the difference).
    """

    claim: str
    value: float
    target: float = math.nan  # NaN: no target, the value is only reported
    unit: str = "x"
    strict: bool = False  # met needs value > target rather than >=
    stated: bool | None = None  # the verdict the record states, where the record decides it
    vs: float = math.nan  # a reference value shown beside the measured one
    dataset: str = ""
    run: str = ""

    @property
    def verdict(self) -> str:
        """The verdict: met, missed, reported (no target) or not measured (no finite value)."""
        if not _finite(self.value):
            return "not measured"
        if self.stated is not None:
            return "met" if self.stated else "missed"
        if not _finite(self.target):
            return "reported"
        v, t = float(self.value), float(self.target)
        return "met" if (v > t if self.strict else v >= t - 1e-12) else "missed"

    @property
    def short_by(self) -> float:
        """How far a missed target is: a factor for ratios, else target - value; NaN if met."""
        if self.verdict != "missed" or not _finite(self.target):
            return math.nan
        v, t = float(self.value), float(self.target)
        if self.unit == "x":
            return t / v if v > 0 else math.inf
        return t - v


#: The pick may lose at most this much validation accuracy to the reference CNN.
PICK_TOLERANCE = 0.01


def pick_member(front: Sequence[Mapping[str, Any]], reference_val_accuracy: float, *,
                tolerance: float = PICK_TOLERANCE) -> tuple[Mapping[str, Any], bool]:
    """Section 1's pick among Pareto members, the same rule on every dataset.

    The fastest member (``throughput_ips``) whose ``val_accuracy`` is at least
    ``reference_val_accuracy - tolerance``; if none is, the most accurate member (validation).
    Test accuracy is never read: it is reported for the pick, not used to choose it. Ties go
    to the more accurate (resp. faster) member, then to the lower ``trial`` number.

    Returns:
        (the member, whether the accuracy condition was met).
    """
    if not front:
        raise ValueError("pick_member: the front is empty")
    def v(m: Mapping[str, Any], key: str) -> float:  # a missing or NaN value never wins
        x = m.get(key)
        return float(x) if _finite(x) else -math.inf

    floor = float(reference_val_accuracy) - tolerance - 1e-12  # 1e-12: 0.88 - 0.01 is inexact
    ok = [m for m in front if v(m, "val_accuracy") >= floor]

    def fastest(m: Mapping[str, Any]) -> tuple[float, float, float]:
        return v(m, "throughput_ips"), v(m, "val_accuracy"), -float(m.get("trial", 0))

    def most_accurate(m: Mapping[str, Any]) -> tuple[float, float, float]:
        return v(m, "val_accuracy"), v(m, "throughput_ips"), -float(m.get("trial", 0))

    if ok:
        return max(ok, key=fastest), True
    return max(front, key=most_accurate), False


#: Section 1's targets against the CNN (issue 13): (key, claim, target). Accuracy is the pick's
#: test accuracy minus resnet10t's; the others are throughput ratios (> 1 = pick faster).
CNN_TARGETS: tuple[tuple[str, str, float], ...] = (
    ("accuracy_vs_resnet10t", "test accuracy within 1 point of resnet10t", -PICK_TOLERANCE),
    ("throughput_vs_resnet10t", ">= 5x resnet10t fp32 throughput", 5.0),
    ("throughput_vs_deit", ">= 10x DeiT-Tiny-shaped throughput", 10.0),
)


def cnn_targets(*, acc_diff: float, throughput_vs_cnn: float,
                throughput_vs_deit: float) -> list[dict[str, Any]]:
    """Each target of :data:`CNN_TARGETS` with its measured value, met or not, and the
    shortfall (points of accuracy, or the factor still missing) where missed."""
    values = {"accuracy_vs_resnet10t": acc_diff, "throughput_vs_resnet10t": throughput_vs_cnn,
              "throughput_vs_deit": throughput_vs_deit}
    out = []
    for key, claim, target in CNN_TARGETS:
        c = Check(claim, float(values[key]), target,
                  unit="pts" if key.startswith("accuracy") else "x")
        out.append({"key": key, "claim": claim, "target": target, "value": c.value,
                    "met": c.verdict == "met", "short_by": c.short_by})
    return out


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


def best_other_hv(hv: Mapping[str, Mapping[Any, float]], seed: Any, others: Sequence[str]
                  ) -> float:
    """The best hypervolume among searches ``others`` at ``seed`` (0 when none ran): a search
    with one run (the bits grid, keyed by any seed) stands for every seed."""
    best = [runs[seed] if seed in runs else next(iter(runs.values()))
            for o in others if (runs := hv.get(o, {})) and (seed in runs or len(runs) == 1)]
    return max(best, default=0.0)


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
            if (best := best_other_hv(hv, s, others)) > 0:
                ratios_.append(j / best)
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
