"""One self-contained HTML report of a search: fronts, hypervolume history, axes, front table.

The page inlines a single copy of plotly.js in its <head> and every figure is a bare div with its
`Plotly.newPlot` call, so the file opens offline and stays one (large, ~5 MB) file however many
figures it holds.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from jointopt.pareto import (
    Objective,
    front_table,
    hypervolume_history,
    knee_point,
    objective_value,
    pareto_front,
)

__all__ = ["write_report"]

Record = Mapping[str, Any]

_GREY, _FRONT, _INFEASIBLE, _BASELINE, _KNEE = "#b4b4b4", "#1f5fbf", "#d62728", "#ff9f1c", "#2ca02c"
_TEMPLATE = "plotly_white"
_FIG_CONFIG = {"displaylogo": False, "responsive": True}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.note { background: #fff6e0; border-left: 4px solid #ff9f1c; padding: .5rem .8rem; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1rem; }
.grid > div { min-width: 0; }
table.front { border-collapse: collapse; font-size: .8rem; }
table.front th, table.front td { padding: .2rem .45rem; border-bottom: 1px solid #ddd;
  text-align: right; white-space: nowrap; }
table.front th { background: #f2f4f8; }
.scroll { overflow-x: auto; }
"""


def write_report(records: Sequence[Record], objectives: Sequence[Objective], baseline: Record,
                 out_path: str | Path, *, title: str = "jointopt search report") -> Path:
    """Write the report for `records` (trial order) against `baseline`; returns the path.

    Args:
        records: finished trials as plain records (see `jointopt.pareto`).
        objectives: the study's objectives; the first three also make a 3-D scatter.
        baseline: the record of the study's `space.max_config`, evaluated like a trial.
        out_path: the HTML file to write; its folder is created.
        title: the page title and heading.
    """
    objectives = list(objectives)
    if not objectives:
        raise ValueError("write_report needs at least one objective.")
    front = pareto_front(records, objectives)
    knee = knee_point(front, objectives, baseline)
    history = hypervolume_history(records, objectives, baseline)

    figures = _front_figures(records, front, knee, baseline, objectives)
    figures.append(("hypervolume", _history_figure(records, history)))
    figures.append(("axes", _parallel_figure(records)))
    divs = [pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
                        config=_FIG_CONFIG, default_height="460px")
            for name, fig in figures]

    n_feasible = sum(bool(r.get("feasible")) for r in records)
    summary = (f"{len(records)} trials, {n_feasible} feasible, {len(front)} on the Pareto front. "
               f"Normalised hypervolume {history[-1] if history else 0.0:.4f}"
               + (f"; knee point: trial {knee.get('number')}." if knee is not None else "."))
    objs = ", ".join(f"{o.key} ({o.direction})" for o in objectives)
    table = front_table(front, objectives, baseline).to_html(
        index=False, classes="front", border=0, na_rep="-", float_format=lambda v: f"{v:.4g}")
    n_pairs = len(figures) - 2  # the front figures: 2-D pairs, then the 3-D one if any
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
<p>Objectives: {html.escape(objs)}. The baseline (star) is the largest architecture at fp32 with
r = 0; reduction factors are baseline / subnet (throughput: subnet / baseline), so larger is
better.</p>
{_measurement_note(records, baseline)}
<h2>Pareto front</h2>
<div class="grid">{"".join(divs[:n_pairs])}</div>
<h2>Hypervolume over trials</h2>
<p>Objectives normalised to error (1 - accuracy) and ratios to the baseline; reference point:
error 1 and every ratio 1, so only subnets better than the baseline on every cost add volume.</p>
{divs[n_pairs]}
<h2>Joint axes</h2>
<p>One line per feasible trial, coloured by accuracy; num_heads and mlp_ratio are means over the
active layers, tome_r is the total number of tokens merged.</p>
{divs[n_pairs + 1]}
<h2>Front members</h2>
<div class="scroll">{table}</div>
</body></html>
"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _axis_title(obj: Objective) -> str:
    return f"{obj.key} ({'higher' if obj.maximize else 'lower'} is better)"


def _hover(rec: Record) -> str:
    cfg = rec.get("config") or {}
    parts = [f"{k}={_short(cfg[k])}" for k in ("depth", "embed_dim", "num_heads", "mlp_ratio",
                                                "tome_r", "w_bits", "a_bits") if k in cfg]
    return f"trial {rec.get('number')}<br>" + " ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _front_figures(records: Sequence[Record], front: Sequence[Record], knee: Record | None,
                   baseline: Record, objectives: Sequence[Objective]) -> list[tuple[str, Any]]:
    """A 2-D scatter per pair of objectives (one over trial number for a single objective),
    and a 3-D scatter of the first three objectives when there are three or more."""
    feasible = [r for r in records if r.get("feasible")]
    infeasible = [r for r in records if not r.get("feasible")]
    groups: tuple[tuple[str, list[Record], dict[str, Any]], ...] = (  # later ones draw on top
        ("feasible trials", feasible, {"color": _GREY, "size": 7, "opacity": 0.7}),
        ("infeasible", infeasible, {"color": _INFEASIBLE, "symbol": "x", "size": 7}),
        ("Pareto front", list(front), {"color": _FRONT, "size": 10,
                                        "line": {"color": "white", "width": 1}}),
        ("knee point", [knee] if knee is not None else [],
         {"color": _KNEE, "size": 16, "symbol": "diamond-open", "line": {"width": 3}}),
        ("baseline", [baseline], {"color": _BASELINE, "symbol": "star", "size": 16,
                                  "line": {"color": "black", "width": 1}}),
    )
    axes: list[tuple[Objective, ...]] = list(itertools.combinations(objectives, 2))
    figures: list[tuple[str, Any]] = []
    for pair in axes or [(objectives[0],)]:
        fig = go.Figure(layout={"template": _TEMPLATE, "margin": {"l": 60, "r": 10, "t": 30},
                                "legend": {"font": {"size": 10}}})
        for name, group, marker in groups:
            pts = [(_xy(r, pair), _hover(r)) for r in group]
            pts = [(xy, h) for xy, h in pts if all(math.isfinite(v) for v in xy)]
            fig.add_trace(go.Scatter(x=[xy[0] for xy, _ in pts], y=[xy[1] for xy, _ in pts],
                                     text=[h for _, h in pts], mode="markers", name=name,
                                     marker=marker, hovertemplate="%{text}<extra></extra>"))
        x_title = "trial" if len(pair) == 1 else _axis_title(pair[0])
        fig.update_layout(xaxis_title=x_title, yaxis_title=_axis_title(pair[-1]))
        figures.append(("front-" + "-".join(o.key for o in pair), fig))
    if len(objectives) >= 3:
        first3 = list(objectives[:3])
        fig = go.Figure(layout={"template": _TEMPLATE, "margin": {"l": 0, "r": 0, "t": 30},
                                "legend": {"x": 0, "y": 1}})
        for name, group, marker in groups:
            group = [r for r in group if all(math.isfinite(objective_value(r, o.key))
                                             for o in first3)]
            # scatter3d sizes read larger than 2-D ones, and it has no star symbol.
            marker = {**marker, "size": marker["size"] // 2, "opacity": 1.0}
            if marker.get("symbol") == "star":
                marker["symbol"] = "diamond"
            vals = [[objective_value(r, o.key) for r in group] for o in first3]
            fig.add_trace(go.Scatter3d(x=vals[0], y=vals[1], z=vals[2], mode="markers",
                                       name=name, marker=marker, text=[_hover(r) for r in group],
                                       hovertemplate="%{text}<extra></extra>"))
        # A closer, lower camera than plotly's default keeps the axis titles inside a grid cell.
        fig.update_layout(scene={"xaxis_title": first3[0].key, "yaxis_title": first3[1].key,
                                 "zaxis_title": first3[2].key,
                                 "camera": {"eye": {"x": 1.45, "y": 1.45, "z": 0.7}}},
                          legend={"font": {"size": 10}})
        figures.append(("front-3d", fig))
    return figures


def _xy(rec: Record, pair: tuple[Objective, ...]) -> tuple[float, float]:
    if len(pair) == 1:
        number = rec.get("number")
        return (float(number) if isinstance(number, (int, float)) else math.nan,
                objective_value(rec, pair[0].key))
    return objective_value(rec, pair[0].key), objective_value(rec, pair[1].key)


def _history_figure(records: Sequence[Record], history: Sequence[float]) -> Any:
    numbers = [r.get("number", i) for i, r in enumerate(records)]
    fig = go.Figure(go.Scatter(x=numbers, y=list(history), mode="lines+markers",
                               line={"shape": "hv", "color": _FRONT}, marker={"size": 4},
                               name="hypervolume"),
                    layout={"template": _TEMPLATE, "title": "normalised hypervolume",
                            "xaxis_title": "trial", "yaxis_title": "hypervolume",
                            "yaxis_rangemode": "tozero",
                            "margin": {"l": 60, "r": 20, "t": 40}})
    return fig


def _layers(value: Any, depth: int) -> list[float]:
    """A per-layer field as the list of its active layers' values (a scalar applies to all)."""
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value[:depth]]
    return [float(value)] * depth


def _parallel_figure(records: Sequence[Record]) -> Any:
    """Parallel coordinates over the joint axes of the feasible trials, coloured by accuracy."""
    rows = []
    for rec in records:
        cfg = rec.get("config") or {}
        acc = objective_value(rec, "accuracy")
        if not rec.get("feasible") or not math.isfinite(acc):
            continue
        try:
            depth = int(cfg["depth"])
            heads, mlp = _layers(cfg["num_heads"], depth), _layers(cfg["mlp_ratio"], depth)
            rows.append({"depth": depth, "embed_dim": float(cfg["embed_dim"]),
                         "num_heads (mean)": sum(heads) / max(len(heads), 1),
                         "mlp_ratio (mean)": sum(mlp) / max(len(mlp), 1),
                         "tome_r (total)": sum(_layers(cfg["tome_r"], depth)),
                         "w_bits": float(cfg["w_bits"]), "a_bits": float(cfg["a_bits"]),
                         "accuracy": acc})
        except (KeyError, TypeError, ValueError):
            continue  # a record without a complete config cannot be placed on the axes
    labels = ["depth", "embed_dim", "num_heads (mean)", "mlp_ratio (mean)", "tome_r (total)",
              "w_bits", "a_bits", "accuracy"]
    dims = [{"label": k, "values": [row[k] for row in rows]} for k in labels]
    return go.Figure(
        go.Parcoords(dimensions=dims, line={"color": [row["accuracy"] for row in rows],
                                            "colorscale": "Viridis", "showscale": True,
                                            "colorbar": {"title": {"text": "accuracy"}}}),
        layout={"template": _TEMPLATE, "margin": {"l": 70, "r": 40, "t": 60}})


def _measurement_note(records: Sequence[Record], baseline: Record) -> str:
    """Say where energy and latency figures come from; modelled energy is flagged as such."""
    metrics = [(r.get("metrics") or {}) for r in [*records, baseline]]
    sources = sorted({str(m["energy_source"]) for m in metrics if m.get("energy_source")})
    runtimes = sorted({str(m["latency_runtime"]) for m in metrics if m.get("latency_runtime")})
    parts = []
    modelled = [s for s in sources if s.startswith("model:")]
    if modelled:
        names = ", ".join(s.removeprefix("model:") for s in modelled)
        parts.append(f"Energy is <b>modelled</b> (analytic model: {html.escape(names)}), "
                     "not measured.")
    measured = [s for s in sources if not s.startswith("model:")]
    if measured:
        parts.append(f"Energy measured with {html.escape(', '.join(measured))}.")
    if runtimes:
        parts.append(f"Latency measured on {html.escape(', '.join(runtimes))}.")
    contended = sum(1 for m in metrics if m.get("latency_contended"))
    if contended:
        parts.append(f"<b>{contended} timing(s) were taken while other processes kept the "
                     "timed cores busy</b> (<code>latency_contended</code>): their latency may "
                     "be too high. They are not cached: <code>jointopt evaluate</code> on a quiet "
                     "machine, or a later trial of the same config, measures them again.")
    return f'<p class="note">{" ".join(parts)}</p>' if parts else ""

