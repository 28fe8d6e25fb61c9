"""The report's search figures: Pareto fronts (2-D pairs and 3-D), hypervolume history, and the
joint axes with their costs in parallel coordinates. Every point's hover text gives its config
and its metrics."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from jointopt.pareto import Objective, objective_value

Record = Mapping[str, Any]

__all__ = ["TEMPLATE", "FRONT_COLOR", "front_figures", "history_figure", "hover_text",
           "joint_axes", "parallel_figure", "precision_label", "short"]

GREY, FRONT_COLOR, INFEASIBLE, BASELINE, KNEE = (
    "#b4b4b4", "#1f5fbf", "#d62728", "#ff9f1c", "#2ca02c")
TEMPLATE = "plotly_white"

# metric key -> (hover label, format, unit)
_HOVER_METRICS = (
    ("accuracy", "accuracy", ".4f", ""), ("latency_ms", "latency", ".3g", " ms"),
    ("throughput_ips", "throughput", ",.0f", " img/s"), ("energy_mj", "energy", ".3g", " mJ"),
)


def short(value: Any) -> str:
    """A config value in a few characters: 3 -> "3", [2, 2, 1] -> "2,2,1", 3.0 -> "3"."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def precision_label(cfg: Any) -> str:
    """'w8a8', 'w32a32', ...: the precision axis as the search space names it."""
    return f"w{cfg.get('w_bits')}a{cfg.get('a_bits')}"


def hover_text(rec: Record) -> str:
    """The trial, its precision and architecture (three short lines, so the label fits beside a
    point in a narrow plot), then accuracy, latency (and the runtime that measured it),
    throughput and energy (flagged when modelled), one per line."""
    cfg = rec.get("config") or {}
    metrics = rec.get("metrics") or {}

    def field(label: str, key: str) -> str:
        return f"{label} {short(cfg[key])}" if key in cfg else ""

    arch = [field("depth", "depth"), field("embed", "embed_dim"), field("heads", "num_heads")]
    rest = [field("mlp", "mlp_ratio"), field("r", "tome_r")]
    lines = [f"<b>trial {rec.get('number')}</b> · {precision_label(cfg)}",
             " · ".join(p for p in arch if p), " · ".join(p for p in rest if p)]
    for key, label, fmt, unit in _HOVER_METRICS:
        value = objective_value(rec, key)
        if not math.isfinite(value):
            continue
        line = f"{label} {value:{fmt}}{unit}"
        if key == "latency_ms" and metrics.get("latency_runtime"):
            line += f" ({str(metrics['latency_runtime']).split(' (')[0]})"
        if key == "energy_mj" and str(metrics.get("energy_source", "")).startswith("model:"):
            line += " (modelled)"
        lines.append(line)
    return "<br>".join(line for line in lines if line)


def _axis_title(obj: Objective) -> str:
    return f"{obj.key} ({'higher' if obj.maximize else 'lower'} is better)"


def front_figures(records: Sequence[Record], front: Sequence[Record], knee: Record | None,
                  baseline: Record, objectives: Sequence[Objective]) -> list[tuple[str, Any]]:
    """A 2-D scatter per pair of objectives (one over trial number for a single objective),
    and a 3-D scatter of the first three objectives when there are three or more."""
    feasible = [r for r in records if r.get("feasible")]
    infeasible = [r for r in records if not r.get("feasible")]
    groups: tuple[tuple[str, list[Record], dict[str, Any]], ...] = (  # later ones draw on top
        ("feasible trials", feasible, {"color": GREY, "size": 7, "opacity": 0.7}),
        ("infeasible", infeasible, {"color": INFEASIBLE, "symbol": "x", "size": 7}),
        ("Pareto front", list(front), {"color": FRONT_COLOR, "size": 10,
                                        "line": {"color": "white", "width": 1}}),
        ("knee point", [knee] if knee is not None else [],
         {"color": KNEE, "size": 16, "symbol": "diamond-open", "line": {"width": 3}}),
        ("baseline", [baseline], {"color": BASELINE, "symbol": "star", "size": 16,
                                  "line": {"color": "black", "width": 1}}),
    )
    axes: list[tuple[Objective, ...]] = list(itertools.combinations(objectives, 2))
    figures: list[tuple[str, Any]] = []
    for pair in axes or [(objectives[0],)]:
        # One legend, under the first plot (above, it would run into plotly's toolbar): the
        # pairs then fit three side by side and their plot areas line up.
        fig = go.Figure(layout={"template": TEMPLATE, "margin": {"l": 60, "r": 10, "t": 30,
                                                                  "b": 110},
                                "showlegend": not figures,
                                "legend": {"font": {"size": 10}, "orientation": "h",
                                           "x": 0, "y": -0.22, "yanchor": "top"},
                                "hoverlabel": {"align": "left"}})
        for name, group, marker in groups:
            pts = [(_xy(r, pair), hover_text(r)) for r in group]
            pts = [(xy, h) for xy, h in pts if all(math.isfinite(v) for v in xy)]
            fig.add_trace(go.Scatter(x=[xy[0] for xy, _ in pts], y=[xy[1] for xy, _ in pts],
                                     text=[h for _, h in pts], mode="markers", name=name,
                                     marker=marker, hovertemplate="%{text}<extra></extra>"))
        x_title = "trial" if len(pair) == 1 else _axis_title(pair[0])
        fig.update_layout(xaxis_title=x_title, yaxis_title=_axis_title(pair[-1]))
        figures.append(("front-" + "-".join(o.key for o in pair), fig))
    if len(objectives) >= 3:
        figures.append(("front-3d", _front_3d(groups, list(objectives[:3]))))
    return figures


def _front_3d(groups: Sequence[tuple[str, list[Record], dict[str, Any]]],
              first3: list[Objective]) -> Any:
    # The figure gets a full-width row: in a half-width cell plotly shrinks the scene until the
    # axis titles fall outside it.
    fig = go.Figure(layout={"template": TEMPLATE, "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
                            "legend": {"x": 0, "y": 1, "font": {"size": 10}},
                            "hoverlabel": {"align": "left"}})
    for name, group, marker in groups:
        group = [r for r in group if all(math.isfinite(objective_value(r, o.key))
                                         for o in first3)]
        # scatter3d sizes read larger than 2-D ones, and it has no star symbol.
        marker = {**marker, "size": marker["size"] // 2, "opacity": 1.0}
        # WebGL draws 3-D markers as font glyphs: no star, and the "x" glyph is missing from
        # common fonts (a box shows instead).
        marker["symbol"] = {"star": "diamond", "x": "square"}.get(marker.get("symbol", ""),
                                                                 marker.get("symbol", "circle"))
        vals = [[objective_value(r, o.key) for r in group] for o in first3]
        fig.add_trace(go.Scatter3d(x=vals[0], y=vals[1], z=vals[2], mode="markers",
                                   name=name, marker=marker, text=[hover_text(r) for r in group],
                                   hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(scene={"xaxis_title": first3[0].key, "yaxis_title": first3[1].key,
                             "zaxis_title": first3[2].key, "aspectmode": "cube",
                             "camera": {"eye": {"x": 1.6, "y": 1.6, "z": 0.9}}})
    return fig


def _xy(rec: Record, pair: tuple[Objective, ...]) -> tuple[float, float]:
    if len(pair) == 1:
        number = rec.get("number")
        return (float(number) if isinstance(number, (int, float)) else math.nan,
                objective_value(rec, pair[0].key))
    return objective_value(rec, pair[0].key), objective_value(rec, pair[1].key)


def history_figure(records: Sequence[Record], history: Sequence[float]) -> Any:
    numbers = [r.get("number", i) for i, r in enumerate(records)]
    return go.Figure(go.Scatter(x=numbers, y=list(history), mode="lines+markers",
                                line={"shape": "hv", "color": FRONT_COLOR}, marker={"size": 4},
                                name="hypervolume"),
                     layout={"template": TEMPLATE, "xaxis_title": "trial",
                             "yaxis_title": "normalised hypervolume",
                             "yaxis_rangemode": "tozero", "margin": {"l": 60, "r": 20, "t": 20}})


def _layers(value: Any, depth: int) -> list[float]:
    """A per-layer field as the list of its active layers' values (a scalar applies to all)."""
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value[:depth]]
    return [float(value)] * depth


def joint_axes(cfg: Any) -> dict[str, Any]:
    """A config on scalar axes: per-layer fields as a mean (heads, MLP ratio) or a total (tokens
    merged). Raises KeyError/TypeError/ValueError for an incomplete config."""
    depth = int(cfg["depth"])
    heads, mlp = _layers(cfg["num_heads"], depth), _layers(cfg["mlp_ratio"], depth)
    return {"depth": depth, "embed_dim": int(cfg["embed_dim"]),
            "num_heads (mean)": sum(heads) / max(len(heads), 1),
            "mlp_ratio (mean)": sum(mlp) / max(len(mlp), 1),
            "tome_r (total)": int(sum(_layers(cfg["tome_r"], depth))),
            "w_bits": int(cfg["w_bits"]), "a_bits": int(cfg["a_bits"]),
            "precision": precision_label(cfg)}


_PARALLEL_AXES = ("depth", "embed_dim", "num_heads (mean)", "mlp_ratio (mean)",
                  "tome_r (total)", "w_bits", "a_bits")
_COSTS = ("latency_ms", "throughput_ips", "energy_mj", "model_bytes")


def parallel_figure(records: Sequence[Record], objectives: Sequence[Objective]) -> Any:
    """Parallel coordinates of the feasible trials: the joint axes, then accuracy and the costs
    (the study's objectives first), coloured by accuracy."""
    costs = list(dict.fromkeys([*(o.key for o in objectives if not o.is_accuracy), *_COSTS]))
    rows = []
    for rec in records:
        acc = objective_value(rec, "accuracy")
        if not rec.get("feasible") or not math.isfinite(acc):
            continue
        try:
            axes = joint_axes(rec.get("config") or {})
        except (KeyError, TypeError, ValueError):
            continue  # a record without a complete config cannot be placed on the axes
        rows.append({**{k: float(axes[k]) for k in _PARALLEL_AXES}, "accuracy": acc,
                     **{k: objective_value(rec, k) for k in costs}})
    costs = [k for k in costs if rows and all(math.isfinite(r[k]) for r in rows)]
    labels = [*_PARALLEL_AXES, "accuracy", *costs]
    dims = [{"label": k, "values": [row[k] for row in rows]} for k in labels]
    return go.Figure(
        go.Parcoords(dimensions=dims, labelangle=-20, labelside="top",
                     line={"color": [row["accuracy"] for row in rows],
                           "colorscale": "Viridis", "showscale": True,
                           "colorbar": {"title": {"text": "accuracy"}}}),
        layout={"template": TEMPLATE, "margin": {"l": 50, "r": 40, "t": 90, "b": 30}})
