"""Pareto front, normalised hypervolume, knee point and reduction factors over trial records.

A *record* is one finished trial as a plain dict::

    {"number": 7, "config": {...JointConfig fields...}, "metrics": {...Metrics keys...},
     "feasible": True}

and the *baseline* is a record of the same form for the study's `space.max_config`. A record
is *eligible* for the front and the hypervolume when `feasible` is true and every objective has a
finite value; a record without `feasible` counts as infeasible.

Everything here compares records in one **minimisation space** (`normalize`): accuracy becomes
error, every other objective becomes a ratio to the baseline. The reference point for the
hypervolume is then simply error 1 and every ratio 1, so a hypervolume is comparable across
studies, runtimes and machines, and only subnets that beat the baseline on every cost count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

# The hypervolume must be Optuna's routine (the one its samplers and `optuna.visualization`
# use), and Optuna 5 has no public name for it. This is jointopt's only import of an Optuna
# private: only `_hv` calls it, everything else goes through `hypervolume_of_points` (or
# `hypervolume`), and tests/test_pareto.py checks it against an exact hypervolume, so an Optuna
# that changes the routine fails there, and one that drops it fails here, by name.
try:
    from optuna._hypervolume import compute_hypervolume as _optuna_hypervolume
except ImportError as e:  # pragma: no cover  (an Optuna without it)
    raise ImportError(
        f"jointopt.pareto computes hypervolumes with Optuna's "
        f"optuna._hypervolume.compute_hypervolume, which Optuna {optuna.__version__} does not "
        f"provide ({e}); install an Optuna that has it (jointopt is tested with 5.0)") from e

__all__ = [
    "ACCURACY_KEYS", "CONFIG_AXES", "DEFAULT_OBJECTIVES", "METRIC_KEYS", "Objective", "front_table",
    "hypervolume", "hypervolume_history", "hypervolume_of_points", "is_eligible", "knee_point",
    "normalize",
    "objective_value", "pareto_front", "reductions",
]

Record = Mapping[str, Any]

ACCURACY_KEYS = frozenset({"accuracy", "test_accuracy", "balanced_accuracy",
                           "test_balanced_accuracy"})
#: The keys every evaluation records (jointopt.evaluation.Metrics), kept here, free of torch, for
#: the code that reads stored trials.
METRIC_KEYS: tuple[str, ...] = (
    "accuracy", "params", "macs", "bitops", "model_bytes", "latency_ms", "throughput_ips",
    "latency_runtime", "energy_mj", "energy_source",
)
CONFIG_AXES = ("depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r", "w_bits", "a_bits")
_DIRECTIONS = ("maximize", "minimize")

# (metric key, column suffix, True when smaller is better so the factor is baseline / record)
_REDUCTIONS = (
    ("params", "params_x", True), ("macs", "macs_x", True), ("bitops", "bitops_x", True),
    ("model_bytes", "model_bytes_x", True), ("energy_mj", "energy_x", True),
    ("latency_ms", "latency_x", True), ("throughput_ips", "throughput_x", False),
)


@dataclass(frozen=True)
class Objective:
    """One metric key to optimise and its direction ("maximize" or "minimize")."""

    key: str
    direction: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"Objective key must be a non-empty string, got {self.key!r}.")
        if self.direction not in _DIRECTIONS:
            raise ValueError(
                f"Objective {self.key!r}: direction must be one of {_DIRECTIONS}, "
                f"got {self.direction!r}."
            )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def is_accuracy(self) -> bool:
        """Accuracy-like: normalised as error = 1 - value rather than as a baseline ratio."""
        return self.maximize and self.key in ACCURACY_KEYS


DEFAULT_OBJECTIVES: tuple[Objective, ...] = (
    Objective("accuracy", "maximize"),
    Objective("latency_ms", "minimize"),
    Objective("energy_mj", "minimize"),
)


def objective_value(record: Record, key: str) -> float:
    """The metric `key` of a record as a float; NaN when missing or not a number."""
    metrics = record.get("metrics") or {}
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def is_eligible(record: Record, objectives: Sequence[Objective]) -> bool:
    """Feasible and with a finite value for every objective: may sit on the front."""
    if not record.get("feasible", False):
        return False
    return all(math.isfinite(objective_value(record, o.key)) for o in objectives)


def pareto_front(records: Sequence[Record], objectives: Sequence[Objective]) -> list[Record]:
    """The non-dominated eligible records, in their input (trial) order.

    Infeasible records never enter, even when they would dominate. Ties: records with *identical*
    objective vectors are all kept, since neither dominates the other and they are distinct
    configurations a user may want to choose between (e.g. the same accuracy and cost at two
    bit-widths).
    """
    candidates = [r for r in records if is_eligible(r, objectives)]
    if not candidates:
        return []
    # Compare in a pure minimisation space; the raw values suffice, no baseline is needed.
    signs = np.array([-1.0 if o.maximize else 1.0 for o in objectives])
    pts = np.array([[objective_value(r, o.key) for o in objectives] for r in candidates]) * signs
    # O(n^2) pairwise check: fronts here come from hundreds of trials, not millions.
    keep = [not np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)) for p in pts]
    return [r for r, k in zip(candidates, keep, strict=True) if k]


def normalize(records: Sequence[Record], objectives: Sequence[Objective],
              baseline: Record) -> np.ndarray:
    """[n, k] objective values in a minimisation space relative to the baseline.

    Accuracy-like objectives become error = 1 - value; an objective to minimise becomes
    value / baseline; any other objective to maximise becomes baseline / value (a value of 0
    gives inf). The baseline therefore maps to (its error, 1, 1, ...). Missing values are NaN.
    """
    out = np.full((len(records), len(objectives)), np.nan)
    for j, obj in enumerate(objectives):
        col = np.array([objective_value(r, obj.key) for r in records], dtype=float)
        if obj.is_accuracy:
            out[:, j] = 1.0 - col
            continue
        base = objective_value(baseline, obj.key)
        if not math.isfinite(base) or base <= 0:
            raise ValueError(
                f"Objective {obj.key!r}: the baseline value must be a positive number to "
                f"normalise against, got {base!r}."
            )
        with np.errstate(divide="ignore"):
            out[:, j] = base / col if obj.maximize else col / base
    return out


def hypervolume(records: Sequence[Record], objectives: Sequence[Objective],
                baseline: Record) -> float:
    """Normalised hypervolume of the eligible records, reference point (1, 1, ..., 1).

    In `normalize`'s space the reference is error 1 and every cost ratio 1 (the baseline's
    cost). A point worse than the reference in any coordinate adds nothing and is dropped before
    Optuna's routine (which refuses such points); a point no cheaper than the baseline on some
    cost spans zero volume. Dominated points add nothing either, so the front need not be
    computed first.
    """
    eligible = [r for r in records if is_eligible(r, objectives)]
    if not eligible:
        return 0.0
    pts = normalize(eligible, objectives, baseline)
    return _hv(pts)


def hypervolume_history(records: Sequence[Record], objectives: Sequence[Objective],
                        baseline: Record) -> list[float]:
    """The hypervolume of records[:i + 1] for each i (in the given, trial, order)."""
    history: list[float] = []
    inside = np.empty((0, len(objectives)))
    current = 0.0
    for record in records:
        if is_eligible(record, objectives):
            p = normalize([record], objectives, baseline)
            if _within_reference(p).all():
                # Only a point not weakly dominated by the kept ones can change the volume.
                if not np.any(np.all(inside <= p[0], axis=1)):
                    inside = np.vstack([inside, p])
                    current = _hv(inside)
        history.append(current)
    return history


def knee_point(front: Sequence[Record], objectives: Sequence[Objective],
               baseline: Record) -> Record | None:
    """The front member closest to the front's ideal point; None for an empty front.

    The front is mapped to `normalize`'s space and then each objective is rescaled so the front
    spans [0, 1] on it (0 = the best member's value, the ideal; 1 = the worst, the nadir). Without
    that rescaling an axis with a wide range (a latency ratio from 0.1 to 1) would outweigh one
    with a narrow range (error from 0.05 to 0.08). The knee is the member with the smallest
    Euclidean distance to the ideal (0, ..., 0), the usual "closest to utopia" compromise. An
    objective on which all members agree contributes nothing. Ties go to the earlier member.
    """
    if not front:
        return None
    pts = normalize(front, objectives, baseline)
    lo, hi = np.nanmin(pts, axis=0), np.nanmax(pts, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.linalg.norm((pts - lo) / span, axis=1)
    return front[int(np.nanargmin(dist))]


def reductions(record: Record, baseline: Record) -> dict[str, float]:
    """Improvement factors over the baseline, > 1 meaning better.

    baseline / record for params, macs, bitops, model_bytes, energy_mj and latency_ms;
    record / baseline for throughput_ips. NaN when either value is missing or the divisor is 0.
    """
    out: dict[str, float] = {}
    for key, name, smaller_is_better in _REDUCTIONS:
        rec, base = objective_value(record, key), objective_value(baseline, key)
        num, den = (base, rec) if smaller_is_better else (rec, base)
        out[name] = num / den if math.isfinite(num) and math.isfinite(den) and den != 0 \
            else math.nan
    return out


def front_table(front: Sequence[Record], objectives: Sequence[Objective],
                baseline: Record) -> pd.DataFrame:
    """One row per front member: config axes, objective values, accuracy, runtime, factors.

    Per-layer fields are JSON lists ("[2, 2, 1]"; a scalar stored value as a one-element
    list), so each column has one type and a CSV reader gets numbers back. Rows are sorted
    best first by the first objective (trial number breaks ties).
    """
    rows = []
    for rec in front:
        cfg = rec.get("config") or {}
        row: dict[str, Any] = {"number": rec.get("number")}
        for axis in CONFIG_AXES:
            value = cfg.get(axis)
            row[axis] = _compact(value) if axis in ("num_heads", "mlp_ratio", "tome_r") else value
        for obj in objectives:
            row[obj.key] = objective_value(rec, obj.key)
        row["accuracy"] = objective_value(rec, "accuracy")
        row["latency_runtime"] = (rec.get("metrics") or {}).get("latency_runtime")
        row.update(reductions(rec, baseline))
        rows.append(row)
    columns = list(dict.fromkeys(["number", *CONFIG_AXES, *(o.key for o in objectives),
                                  "accuracy", "latency_runtime", *(n for _, n, _ in _REDUCTIONS)]))
    table = pd.DataFrame(rows, columns=columns)
    if objectives and len(table):
        first = objectives[0]
        table = table.sort_values([first.key, "number"], ascending=[not first.maximize, True],
                                  kind="stable", na_position="last")
    return table.reset_index(drop=True)


def _compact(value: Any) -> str:
    """A per-layer value as a JSON list, whatever was stored: 3 -> "[3]", [2, 2, 1] ->
    "[2, 2, 1]" (one type per column; `json.loads` reads it back as numbers)."""
    if value is None:
        return ""
    values = value if isinstance(value, (list, tuple)) else [value]
    return json.dumps(list(values))


def hypervolume_of_points(pts: np.ndarray) -> float:
    """Hypervolume of points already in :func:`normalize`'s space (reference point all ones);
    points outside the reference box add nothing."""
    pts = np.asarray(pts, dtype=float)
    return _hv(pts.reshape(len(pts), -1)) if len(pts) else 0.0


def _within_reference(pts: np.ndarray) -> np.ndarray:
    """Rows with every coordinate finite and no worse than the reference point (all ones)."""
    return np.all(np.isfinite(pts) & (pts <= 1.0), axis=1)


def _hv(pts: np.ndarray) -> float:
    """The one caller of Optuna's hypervolume routine (see the import)."""
    pts = pts[_within_reference(pts)]
    if len(pts) == 0:
        return 0.0
    return float(_optuna_hypervolume(pts, np.ones(pts.shape[1])))
