"""One self-contained HTML report of a search, in the order an engineer reads it.

The summary (what the storage holds, the knee point), the front members with their reduction
factors, the Pareto fronts, each axis's effect on accuracy and latency, parameter importances,
the joint axes with their costs, the hypervolume history and the supernet's training curve.

The page inlines a single copy of plotly.js in its <head> and every figure is a bare div with its
`Plotly.newPlot` call, so the file opens offline and stays one (large, ~5 MB) file however many
figures it holds.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.io as pio
from plotly.offline import get_plotlyjs

from jointopt.pareto import (
    Objective,
    hypervolume_history,
    knee_point,
    objective_value,
    pareto_front,
    reductions,
)
from jointopt.report.counts import TrialCounts
from jointopt.report.effects import TOP_QUANTILE, effects_figure, importance_figure, importances
from jointopt.report.figures import (
    front_figures,
    history_figure,
    parallel_figure,
    precision_label,
    short,
)
from jointopt.report.training import training_figure

__all__ = ["write_report"]

Record = Mapping[str, Any]

_FIG_CONFIG = {"displaylogo": False, "responsive": True}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222;
  padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.note { background: #fff6e0; border-left: 4px solid #ff9f1c; padding: .5rem .8rem; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1rem; }
.grid.three { grid-template-columns: repeat(3, minmax(0, 1fr)); }
.grid > div { min-width: 0; }
table.front { border-collapse: collapse; font-size: .78rem; }
table.front th, table.front td { padding: .2rem .3rem; border-bottom: 1px solid #ddd;
  text-align: right; white-space: nowrap; }
table.front th { background: #f2f4f8; }
table.front td:first-child, table.front th:first-child { position: sticky; left: 0;
  background: #f2f4f8; }
table.front th.factor, table.front td.factor { background: #eef6ee; }
table.front td.runtime { text-align: left; color: #555; }
.scroll { overflow-x: auto; }
.small { font-size: .8rem; color: #555; }
"""
_HEIGHTS = {"effects": "620px", "front-3d": "600px", "training": "400px"}
# reduction key -> column header
_FACTORS = {"params_x": "params", "macs_x": "MACs", "bitops_x": "BitOPs",
            "model_bytes_x": "size", "energy_x": "energy", "latency_x": "latency",
            "throughput_x": "throughput"}


def write_report(records: Sequence[Record], objectives: Sequence[Objective], baseline: Record,
                 out_path: str | Path, *, title: str = "jointopt search report",
                 counts: TrialCounts | None = None,
                 training: Sequence[Mapping[str, float]] | None = None,
                 training_source: str | None = None) -> Path:
    """Write the report for `records` (trial order) against `baseline`; returns the path.

    Args:
        records: finished trials as plain records (see `jointopt.pareto`), each config once.
        objectives: the study's objectives; the first three also make a 3-D scatter.
        baseline: the record of the study's `space.max_config`, evaluated like a trial.
        out_path: the HTML file to write; its folder is created.
        title: the page title and heading.
        counts: what the study's storage holds (`TrialCounts.from_trials`); without it the
            records are counted.
        training: the supernet's per-epoch history (`jointopt.report.training.load_history`).
        training_source: where the history was (or would have been) read, for the page.
    """
    objectives = list(objectives)
    if not objectives:
        raise ValueError("write_report needs at least one objective.")
    counts = counts if counts is not None else TrialCounts.from_records(records)
    front = pareto_front(records, objectives)
    knee = knee_point(front, objectives, baseline)
    history = hypervolume_history(records, objectives, baseline)
    scores = importances(records, objectives)

    fronts = front_figures(records, front, knee, baseline, objectives)
    pairs = [f for f in fronts if f[0] != "front-3d"]
    figures = [*fronts, ("effects", effects_figure(records)),
               ("importance", importance_figure(scores)),
               ("axes", parallel_figure(records, objectives)),
               ("hypervolume", history_figure(records, history))]
    if training:
        figures.append(("training", training_figure(training)))
    divs = {name: pio.to_html(fig, full_html=False, include_plotlyjs=False,
                              div_id=f"fig-{name}", config=_FIG_CONFIG,
                              default_height=_HEIGHTS.get(name, "460px"))
            for name, fig in figures}

    shown = sum(1 for r in records if math.isfinite(objective_value(r, objectives[0].key)))
    n_feasible = sum(bool(r.get("feasible")) for r in records)
    summary = (f"{counts.sentence()} The figures show the {shown} measured configs: "
               f"{n_feasible} feasible, {len(front)} on the Pareto front. Normalised hypervolume "
               f"{history[-1] if history else 0.0:.4f}.")
    objs = ", ".join(f"{o.key} ({o.direction})" for o in objectives)
    grid = "".join(divs[name] for name, _ in pairs)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p id="summary">{html.escape(summary)}</p>
{_knee_line(knee, baseline)}
<p>Objectives: {html.escape(objs)}. The baseline (star) is the largest architecture at fp32 with
r = 0; reduction factors are baseline / subnet (throughput: subnet / baseline), so larger is
better. Hover over a point for its config and metrics.</p>
{_measurement_note(records, baseline)}
<h2>Front members</h2>
<div class="scroll">{_front_table(front, objectives, baseline)}</div>
<h2>Pareto front</h2>
<div class="grid{' three' if len(pairs) % 3 == 0 else ''}">{grid}</div>
{divs.get("front-3d", "")}
<h2>Effect of each axis</h2>
<p>Accuracy and batch-1 latency of every measured config, by depth, embedding width, tokens
merged over all blocks, and precision (weights/activations bits). Each box holds the configs
that share that value; their spread is what the other axes do.</p>
{divs["effects"]}
<h2>Parameter importance</h2>
{_importance_text(scores)}
{divs["importance"]}
<h2>Joint axes and costs</h2>
<p>One line per feasible trial, coloured by accuracy; num_heads and mlp_ratio are means over the
active layers, tome_r is the total number of tokens merged; the cost axes follow accuracy.</p>
{divs["axes"]}
<h2>Hypervolume over trials</h2>
<p>Objectives normalised to error (1 - accuracy) and ratios to the baseline; reference point:
error 1 and every ratio 1, so only subnets better than the baseline on every cost add volume.</p>
{divs["hypervolume"]}
<h2>Supernet training</h2>
{_training_text(training, training_source)}
{divs.get("training", "")}
</body></html>
"""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _knee_line(knee: Record | None, baseline: Record) -> str:
    if knee is None:
        return "<p>No feasible trial yet: the front is empty.</p>"
    red = reductions(knee, baseline)
    parts = [f"{_FACTORS[k]} {v:.1f}x" for k, v in red.items() if math.isfinite(v)]
    acc = objective_value(knee, "accuracy")
    return (f'<p id="knee"><b>Knee point: trial {html.escape(str(knee.get("number")))}</b>, '
            f"accuracy {acc:.4f} (baseline {objective_value(baseline, 'accuracy'):.4f}); "
            f"against the baseline: {html.escape(', '.join(parts))}.</p>")


def _front_table(front: Sequence[Record], objectives: Sequence[Objective],
                 baseline: Record) -> str:
    """Front members, best first by the first objective: objectives, reduction factors, then
    the config, and the runtime last (its long "(nearest to ...)" note goes in a tooltip)."""
    first = objectives[0]
    members = sorted(front, key=lambda r: (-objective_value(r, first.key) if first.maximize
                                           else objective_value(r, first.key),
                                           r.get("number", 0)))
    metric_keys = list(dict.fromkeys([*(o.key for o in objectives), "accuracy"]))
    head = (["trial", *metric_keys], [*_FACTORS.values()],
            ["depth", "embed", "heads", "mlp", "r", "precision", "runtime"])
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head[0])
    cells += "".join(f'<th class="factor" title="{html.escape(k)}: improvement over the '
                     f'baseline">{html.escape(h)} &times;</th>' for k, h in _FACTORS.items())
    cells += "".join(f"<th>{html.escape(h)}</th>" for h in head[2])
    rows = []
    for rec in members:
        cfg = rec.get("config") or {}
        red = reductions(rec, baseline)
        runtime = str((rec.get("metrics") or {}).get("latency_runtime") or "-")
        tds = [f"<td>{html.escape(str(rec.get('number')))}</td>"]
        tds += [f"<td>{_num(objective_value(rec, k))}</td>" for k in metric_keys]
        tds += [f'<td class="factor">{_num(red[k], ".3g")}</td>' for k in _FACTORS]
        tds += [f"<td>{html.escape(short(cfg.get(k, '-')))}</td>"
                for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r")]
        tds.append(f"<td>{html.escape(precision_label(cfg))}</td>")
        tds.append(f'<td class="runtime" title="{html.escape(runtime)}">'
                   f"{html.escape(runtime.split(' (')[0])}{' *' if ' (' in runtime else ''}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    note = ("<p class=\"small\">* the runtime executes the nearest precision it has kernels "
            "for; hover over the runtime for the details.</p>"
            if any(" (" in str((r.get("metrics") or {}).get("latency_runtime", ""))
                   for r in members) else "")
    return (f'<table class="front" id="front-table"><thead><tr>{cells}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{note}")


def _num(value: float, fmt: str = ".4g") -> str:
    return f"{value:{fmt}}" if math.isfinite(value) else "-"


def _importance_text(scores: Mapping[str, Mapping[str, float]]) -> str:
    if not scores:
        return "<p>Too few measured trials to estimate importances.</p>"
    top = "; ".join(f"{html.escape(k)}: {html.escape(max(v, key=lambda a: v[a]))}"
                    for k, v in scores.items() if v)
    return ("<p>How much each joint axis decides whether a config lands among the best "
            f"{TOP_QUANTILE:.0%} on "
            "an objective (<code>optuna.importance</code>, PED-ANOVA, over the measured "
            f"configs). Most important per objective: {top}.</p>")


def _training_text(training: Sequence[Mapping[str, float]] | None,
                   source: str | None) -> str:
    where = f" (<code>{html.escape(source)}</code>)" if source else ""
    if not training:
        return f"<p>No training history found{where}.</p>"
    last = training[-1]
    parts = [f"{k} {v:.4f}" for k, v in last.items() if k not in ("epoch", "loss")]
    return (f"<p>{len(training)} epochs{where}: validation accuracy of the largest and smallest "
            "subnet after each epoch, and the training loss (sandwich rule: largest, smallest "
            f"and one random subnet per step). Last epoch: {html.escape(', '.join(parts))}."
            "</p>")


def _measurement_note(records: Sequence[Record], baseline: Record) -> str:
    """Say where energy and latency figures come from; modelled energy is flagged as such."""
    metrics = [(r.get("metrics") or {}) for r in [*records, baseline]]
    sources = sorted({str(m["energy_source"]) for m in metrics if m.get("energy_source")})
    named = [str(m["latency_runtime"]) for m in metrics if m.get("latency_runtime")]
    # "onnxruntime-int8 (nearest to w4a8)" -> onnxruntime-int8: the note lists runtimes, and the
    # front table and hover text say which configs ran at the nearest precision.
    runtimes = sorted({r.split(" (")[0] for r in named})
    nearest = sum(1 for r in named if " (" in r)
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
        parts.append(f"Latency measured on {html.escape(', '.join(runtimes))}"
                     + (f"; {nearest} of {len(named)} timings ran at the nearest precision the "
                        "runtime executes (hover over a runtime in the table)." if nearest
                        else "."))
    contended = sum(1 for m in metrics if m.get("latency_contended"))
    if contended:
        parts.append(f"<b>{contended} timing(s) were taken while other processes kept the "
                     "timed cores busy</b> (<code>latency_contended</code>): their latency may "
                     "be too high. They are not cached: <code>jointopt evaluate</code> on a quiet "
                     "machine, or a later trial of the same config, measures them again.")
    return f'<p class="note">{" ".join(parts)}</p>' if parts else ""

