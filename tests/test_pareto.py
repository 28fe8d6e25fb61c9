from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from jointopt.pareto import (
    DEFAULT_OBJECTIVES,
    Objective,
    front_table,
    hypervolume,
    hypervolume_history,
    hypervolume_of_points,
    knee_point,
    normalize,
    pareto_front,
    reductions,
)

ACC_LAT = [Objective("accuracy", "maximize"), Objective("latency_ms", "minimize")]

BASELINE_METRICS = {"accuracy": 0.9, "params": 1000.0, "macs": 2000.0, "bitops": 4000.0,
                    "model_bytes": 8000.0, "latency_ms": 2.0, "throughput_ips": 100.0,
                    "energy_mj": 0.4, "latency_runtime": "torch-fp32",
                    "energy_source": "model:horowitz45"}


def rec(number: int, feasible: bool = True, config: dict[str, Any] | None = None,
        **metrics: Any) -> dict[str, Any]:
    cfg = config or {"depth": 2, "embed_dim": 32, "num_heads": [2, 1], "mlp_ratio": 2.0,
                     "tome_r": [1, 0], "w_bits": 8, "a_bits": 8}
    return {"number": number, "config": cfg, "metrics": metrics, "feasible": feasible}


BASELINE = rec(-1, config={"depth": 3, "embed_dim": 64, "num_heads": 2, "mlp_ratio": 2.0,
                           "tome_r": 0, "w_bits": 32, "a_bits": 32}, **BASELINE_METRICS)


def numbers(records: list[dict[str, Any]]) -> list[int]:
    return [r["number"] for r in records]


def test_objective_validates_direction() -> None:
    assert Objective("accuracy", "maximize").maximize
    with pytest.raises(ValueError, match="direction"):
        Objective("latency_ms", "min")
    with pytest.raises(ValueError, match="key"):
        Objective("", "minimize")
    assert [o.key for o in DEFAULT_OBJECTIVES] == ["accuracy", "latency_ms", "energy_mj"]


def test_front_2d_excludes_dominated_and_infeasible_keeps_duplicates() -> None:
    records = [
        rec(0, accuracy=0.90, latency_ms=1.0),
        rec(1, accuracy=0.80, latency_ms=0.5),
        rec(2, accuracy=0.85, latency_ms=1.2),            # dominated by 0
        rec(3, accuracy=0.99, latency_ms=0.1, feasible=False),  # would dominate all
        rec(4, accuracy=0.90, latency_ms=1.0),            # duplicate of 0: kept too
        rec(5, accuracy=0.70, latency_ms=0.5),            # dominated by 1 (equal latency)
        rec(6, accuracy=0.95),                            # no latency: not eligible
    ]
    assert numbers(pareto_front(records, ACC_LAT)) == [0, 1, 4]


def test_front_3d() -> None:
    records = [
        rec(0, accuracy=0.9, latency_ms=1.0, energy_mj=0.3),
        rec(1, accuracy=0.8, latency_ms=0.5, energy_mj=0.3),
        rec(2, accuracy=0.8, latency_ms=1.0, energy_mj=0.1),
        rec(3, accuracy=0.8, latency_ms=1.0, energy_mj=0.3),  # dominated by 1 and by 2
        rec(4, accuracy=0.7, latency_ms=0.4, energy_mj=0.5),  # best latency only
        rec(5, accuracy=0.9, latency_ms=1.0, energy_mj=0.35),  # dominated by 0
    ]
    assert numbers(pareto_front(records, DEFAULT_OBJECTIVES)) == [0, 1, 2, 4]
    assert pareto_front([], DEFAULT_OBJECTIVES) == []


def test_normalize_maps_baseline_to_error_and_ones() -> None:
    objectives = [*DEFAULT_OBJECTIVES, Objective("throughput_ips", "maximize")]
    pts = normalize([BASELINE, rec(0, accuracy=0.8, latency_ms=0.5, energy_mj=0.1,
                                   throughput_ips=400.0)], objectives, BASELINE)
    np.testing.assert_allclose(pts[0], [0.1, 1.0, 1.0, 1.0])
    # Throughput 4x the baseline's is a cost ratio of 1/4 in the minimisation space.
    np.testing.assert_allclose(pts[1], [0.2, 0.25, 0.25, 0.25])
    test_acc = normalize([rec(0, test_accuracy=0.75)], [Objective("test_accuracy", "maximize")],
                         BASELINE)
    np.testing.assert_allclose(test_acc, [[0.25]])
    with pytest.raises(ValueError, match="energy_mj"):
        normalize([BASELINE], DEFAULT_OBJECTIVES, rec(-1, accuracy=0.9, latency_ms=1.0,
                                                       energy_mj=0.0))


def test_hypervolume_single_point_is_its_box() -> None:
    point = rec(0, accuracy=0.9, latency_ms=1.0, energy_mj=0.1)  # error .1, ratios .5 and .25
    assert hypervolume([point], DEFAULT_OBJECTIVES, BASELINE) == pytest.approx(0.9 * 0.5 * 0.75)


def test_hypervolume_baseline_alone_is_zero() -> None:
    # The baseline normalises to (its error, 1, 1): a box of (1 - 0.1) x 0 x 0.
    assert hypervolume([BASELINE], DEFAULT_OBJECTIVES, BASELINE) == 0.0
    assert hypervolume([], DEFAULT_OBJECTIVES, BASELINE) == 0.0


def test_hypervolume_two_points_clipping_and_infeasible() -> None:
    a = rec(0, accuracy=0.8, latency_ms=0.5)  # (0.2, 0.25)
    b = rec(1, accuracy=0.6, latency_ms=0.2)  # (0.4, 0.1)
    # Union of the boxes [0.2, 1] x [0.25, 1] and [0.4, 1] x [0.1, 1].
    expected = 0.8 * 0.75 + 0.6 * 0.9 - 0.6 * 0.75
    assert hypervolume([a, b], ACC_LAT, BASELINE) == pytest.approx(expected)
    slower = rec(2, accuracy=0.99, latency_ms=3.0)  # latency ratio 1.5: outside the reference
    infeasible = rec(3, accuracy=0.99, latency_ms=0.01, feasible=False)
    assert hypervolume([a, b, slower, infeasible], ACC_LAT, BASELINE) == pytest.approx(expected)


def test_hypervolume_with_maximized_throughput() -> None:
    objectives = [Objective("accuracy", "maximize"), Objective("throughput_ips", "maximize")]
    point = rec(0, accuracy=0.8, throughput_ips=400.0)  # ratio 100 / 400
    assert hypervolume([point], objectives, BASELINE) == pytest.approx(0.8 * 0.75)
    assert hypervolume([rec(1, accuracy=0.8, throughput_ips=0.0)], objectives, BASELINE) == 0.0


def test_hypervolume_history_is_non_decreasing_and_ends_at_the_total() -> None:
    rng = np.random.default_rng(0)
    records = [rec(i, feasible=bool(rng.random() > 0.2), accuracy=float(rng.uniform(0.5, 1)),
                   latency_ms=float(rng.uniform(0.1, 2.5)), energy_mj=float(rng.uniform(0, 0.5)))
               for i in range(40)]
    history = hypervolume_history(records, DEFAULT_OBJECTIVES, BASELINE)
    assert len(history) == len(records)
    assert all(b >= a for a, b in zip(history, history[1:], strict=False))
    assert history[-1] == pytest.approx(hypervolume(records, DEFAULT_OBJECTIVES, BASELINE))
    assert history[-1] > 0
    a, b = rec(0, accuracy=0.8, latency_ms=0.5), rec(1, accuracy=0.6, latency_ms=0.2)
    assert hypervolume_history([BASELINE, a, a, b], ACC_LAT, BASELINE) == pytest.approx(
        [0.0, 0.6, 0.6, 0.69])


def test_knee_point_is_the_middle_of_a_convex_front() -> None:
    front = [rec(0, accuracy=0.90, latency_ms=1.8),
             rec(1, accuracy=0.85, latency_ms=0.6),
             rec(2, accuracy=0.60, latency_ms=0.2)]
    assert pareto_front(front, ACC_LAT) == front
    assert knee_point(front, ACC_LAT, BASELINE)["number"] == 1
    assert knee_point(front[:1], ACC_LAT, BASELINE)["number"] == 0
    assert knee_point([], ACC_LAT, BASELINE) is None


def test_reductions() -> None:
    assert reductions(BASELINE, BASELINE) == {
        "params_x": 1.0, "macs_x": 1.0, "bitops_x": 1.0, "model_bytes_x": 1.0,
        "energy_x": 1.0, "latency_x": 1.0, "throughput_x": 1.0}
    small = rec(0, params=100.0, macs=500.0, bitops=0, latency_ms=0.5, throughput_ips=300.0)
    got = reductions(small, BASELINE)
    assert got["params_x"] == 10.0 and got["macs_x"] == 4.0 and got["latency_x"] == 4.0
    assert got["throughput_x"] == 3.0
    assert math.isnan(got["bitops_x"])  # zero divisor
    assert math.isnan(got["energy_x"]) and math.isnan(got["model_bytes_x"])  # missing


def test_front_table() -> None:
    records = [
        rec(3, accuracy=0.80, latency_ms=0.5, energy_mj=0.1, params=500.0,
            latency_runtime="onnxruntime-int8"),
        rec(7, config={"depth": 3, "embed_dim": 64, "num_heads": [2, 2, 1],
                       "mlp_ratio": [2.0, 1.5, 1.5], "tome_r": 2, "w_bits": 4, "a_bits": 8},
            accuracy=0.85, latency_ms=1.0, energy_mj=0.2, latency_runtime="torch-fp32"),
    ]
    table = front_table(pareto_front(records, DEFAULT_OBJECTIVES), DEFAULT_OBJECTIVES, BASELINE)
    assert list(table["number"]) == [7, 3]  # best accuracy first
    row = table.iloc[0]
    assert (row["num_heads"], row["mlp_ratio"], row["tome_r"]) == ("[2, 2, 1]", "[2.0, 1.5, 1.5]",
                                                                   "[2]")
    assert (row["depth"], row["w_bits"], row["latency_runtime"]) == (3, 4, "torch-fp32")
    assert table.iloc[1]["num_heads"] == "[2, 1]" and table.iloc[1]["params_x"] == 2.0
    assert table.iloc[1]["latency_x"] == 4.0
    for col in ("embed_dim", "a_bits", "accuracy", "latency_ms", "energy_mj", "energy_x",
                "throughput_x"):
        assert col in table.columns
    assert list(table.columns).count("accuracy") == 1
    assert front_table([], DEFAULT_OBJECTIVES, BASELINE).empty


# ---- Optuna's hypervolume routine, against an exact one -------------------------------------
# jointopt.pareto calls Optuna's private routine (issue 12 asks for Optuna's; Optuna 5 has no
# public name for it). These pin its results, so an Optuna that changes it fails here.

def _exact_hv_2d(pts: np.ndarray) -> float:
    """Sweep in x: each point in order of x adds the strip below the lowest y so far."""
    pts = pts[np.all(pts <= 1.0, axis=1)]
    total, best_y = 0.0, 1.0
    for x, y in sorted(map(tuple, pts)):
        if y < best_y:
            total += (1.0 - x) * (best_y - y)
            best_y = y
    return total


def _exact_hv_grid(pts: np.ndarray) -> float:
    """Inclusion over the grid of the distinct coordinates: the sum of the volumes of the cells
    of [min, 1]^d whose lower corner some point weakly dominates."""
    d = pts.shape[1]
    edges = [np.unique(np.append(pts[:, j][pts[:, j] <= 1.0], 1.0)) for j in range(d)]
    total = 0.0
    for idx in np.ndindex(*(len(e) - 1 for e in edges)):
        lower = np.array([edges[j][i] for j, i in enumerate(idx)])
        if np.any(np.all(pts <= lower, axis=1)):
            total += float(np.prod([edges[j][i + 1] - edges[j][i] for j, i in enumerate(idx)]))
    return total


def _random_points(rng: np.random.Generator, n: int, d: int, front: bool) -> np.ndarray:
    if front:  # mutually non-dominated: on the sphere of radius 0.9 around the reference
        v = np.abs(rng.normal(size=(n, d)))
        return 1.0 - 0.9 * v / np.linalg.norm(v, axis=1, keepdims=True)
    # dominated ones, and some outside the reference box (they add nothing)
    return rng.uniform(0.0, 1.15, size=(n, d))


@pytest.mark.parametrize("d", [2, 3, 4])
def test_hypervolume_of_points_is_the_exact_hypervolume(d: int) -> None:
    rng = np.random.default_rng(d)
    for trial in range(6):
        n = {2: 25, 3: 12, 4: 7}[d]
        pts = _random_points(rng, n, d, front=trial % 2 == 0)
        exact = _exact_hv_grid(pts)
        if d == 2:
            assert exact == pytest.approx(_exact_hv_2d(pts), rel=1e-12)  # the reference agrees
        assert exact > 0
        assert hypervolume_of_points(pts) == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert hypervolume_of_points(np.empty((0, d))) == 0.0
    assert hypervolume_of_points(np.full((1, d), 1.1)) == 0.0


def test_a_missing_optuna_hypervolume_routine_is_a_clear_import_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    import optuna

    import jointopt.pareto

    monkeypatch.setitem(sys.modules, "optuna._hypervolume", None)  # as if Optuna dropped it
    spec = importlib.util.spec_from_file_location("pareto_copy", jointopt.pareto.__file__)
    assert spec is not None and spec.loader is not None
    with pytest.raises(ImportError, match=rf"optuna\._hypervolume.*Optuna {optuna.__version__}"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
