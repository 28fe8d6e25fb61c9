"""What each axis does: accuracy and latency per value of depth, width, merging and precision,
and Optuna's parameter importances of the joint axes for each objective."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from jointopt.pareto import Objective, objective_value
from jointopt.report.figures import FRONT_COLOR, TEMPLATE, hover_text, joint_axes

__all__ = ["EFFECT_AXES", "EFFECT_METRICS", "IMPORTANCE_AXES", "TOP_QUANTILE", "effects_figure",
           "importance_figure", "importances"]

Record = Mapping[str, Any]

EFFECT_AXES = ("depth", "embed_dim", "tome_r (total)", "precision")
EFFECT_METRICS = (("accuracy", "accuracy"), ("latency_ms", "latency (ms)"))
# The axes whose importance is estimated: the config on scalar axes (see `joint_axes`).
IMPORTANCE_AXES = ("depth", "embed_dim", "num_heads (mean)", "mlp_ratio (mean)",
                   "tome_r (total)", "precision")
# The share of trials PED-ANOVA calls "best": with ~100 trials the best 10% (its default) is so
# few that chance alone ranked an unrelated axis first in 2 of 10 seeded tests.
TOP_QUANTILE = 0.2


def _points(records: Sequence[Record]) -> list[tuple[dict[str, Any], Record]]:
    """(joint axes, record) of every measured trial with a complete config."""
    out = []
    for rec in records:
        if not math.isfinite(objective_value(rec, "accuracy")):
            continue  # invalid configs carry no metrics
        try:
            out.append((joint_axes(rec.get("config") or {}), rec))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _precision_order(label: str) -> tuple[int, int]:
    w, a = label[1:].split("a")
    return -int(w), -int(a)  # w32a32 first, the narrowest last


def effects_figure(records: Sequence[Record]) -> Any:
    """One panel per (metric, axis): every measured trial as a point over the axis value, with a
    box per value, so the spread that the other axes cause stays visible."""
    pts = _points(records)
    fig = make_subplots(rows=len(EFFECT_METRICS), cols=len(EFFECT_AXES), shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.12,
                        column_titles=list(EFFECT_AXES))
    for row, (metric, label) in enumerate(EFFECT_METRICS, start=1):
        for col, axis in enumerate(EFFECT_AXES, start=1):
            values = sorted({a[axis] for a, _ in pts},
                            key=_precision_order if axis == "precision" else None)
            order = [str(v) for v in values]
            keep = [(a, r) for a, r in pts if math.isfinite(objective_value(r, metric))]
            fig.add_trace(go.Box(
                x=[str(a[axis]) for a, _ in keep], y=[objective_value(r, metric) for _, r in keep],
                text=[hover_text(r) for _, r in keep], hovertemplate="%{text}<extra></extra>",
                boxpoints="all", jitter=0.5, pointpos=0, hoveron="points",
                marker={"size": 4, "opacity": 0.6},
                line={"width": 1}, fillcolor="rgba(31,95,191,0.08)", marker_color=FRONT_COLOR,
                name=f"{metric} by {axis}", showlegend=False), row=row, col=col)
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                             row=row, col=col)
        # Latencies span orders of magnitude (and a contended timing can be 100x the rest).
        fig.update_yaxes(type="log" if metric == "latency_ms" else "linear", row=row)
        fig.update_yaxes(title_text=label, row=row, col=1)
    fig.update_layout(template=TEMPLATE, height=620, margin={"l": 60, "r": 10, "t": 40, "b": 30},
                      hoverlabel={"align": "left"})
    return fig


def importances(records: Sequence[Record], objectives: Sequence[Objective]
                ) -> dict[str, dict[str, float]]:
    """Importance of each joint axis for each objective, by `optuna.importance` (PED-ANOVA:
    how much each axis decides whether a trial lands among the best 20% on that objective).

    Computed on an in-memory study of the measured trials, one per objective, with the joint
    axes as its parameters: per-layer Optuna parameters (``num_heads_3``) exist only for deep
    configs and would say little on their own. An objective with too few trials, or on which
    every trial agrees, is left out.
    """
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.study import StudyDirection

    pts = _points(records)
    out: dict[str, dict[str, float]] = {}
    if len(pts) < 4:
        return out
    # Categorical even for the numeric axes: each takes few distinct values, and as floats
    # PED-ANOVA's Parzen estimator ranked a two-valued axis that decided nothing first
    # (tests/test_report_data.py).
    dists: dict[str, BaseDistribution] = {
        axis: CategoricalDistribution(values) for axis in IMPORTANCE_AXES
        if len(values := sorted({a[axis] for a, _ in pts}, key=str)) > 1}
    if not dists:
        return out  # an axis every trial shares explains nothing; PED-ANOVA would not say so
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TOP_QUANTILE)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        for obj in objectives:
            scored = [(a, objective_value(r, obj.key)) for a, r in pts]
            scored = [(a, v) for a, v in scored if math.isfinite(v)]
            if len(scored) < 4 or len({v for _, v in scored}) < 2:
                continue
            study = optuna.create_study(direction=StudyDirection.MAXIMIZE if obj.maximize
                                        else StudyDirection.MINIMIZE)
            study.add_trials([optuna.trial.create_trial(
                params={k: a[k] for k in dists}, distributions=dists, value=v)
                for a, v in scored])
            scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
            out[obj.key] = {k: scores.get(k, 0.0) for k in IMPORTANCE_AXES}
    finally:
        optuna.logging.set_verbosity(verbosity)
    return out


def importance_figure(scores: Mapping[str, Mapping[str, float]]) -> Any:
    """Grouped horizontal bars: one bar per (axis, objective)."""
    fig = go.Figure(layout={"template": TEMPLATE, "barmode": "group",
                            "xaxis_title": "importance (sums to 1 per objective)",
                            "margin": {"l": 130, "r": 20, "t": 20, "b": 40},
                            # the first trace is the lowest bar of a group: list it last
                            "legend": {"title": {"text": "objective"},
                                       "traceorder": "reversed"}})
    for key, per_axis in scores.items():
        axes = list(reversed(IMPORTANCE_AXES))
        fig.add_trace(go.Bar(y=axes, x=[per_axis.get(a, 0.0) for a in axes], orientation="h",
                             name=key, hovertemplate="%{y}: %{x:.3f}<extra>" + key + "</extra>"))
    return fig
