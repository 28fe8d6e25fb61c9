"""RESULTS.md section 2 (joint vs single-axis search) and its figures.

Split from ``bench.render`` (same conventions: tables of all records, details of the record
``pick_record`` chooses, paragraphs filled from its numbers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.render import (
    AXIS_LABEL,
    _num,
    _plt,
    _which,
    f,
    fx,
    mode_of,
    pick_record,
    ranking,
    save_figure,
)
from bench.stats import best_at_kept_accuracy, mean_std


# ---- section 2 ---------------------------------------------------------------------------
def axes(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 2. Joint vs single-axis search (WM-811K)", "",
           "Normalised hypervolume (jointopt.pareto: error and cost ratios to the one max_config "
           "baseline, reference point 1), mean ± std over seeds:", "",
           "| date | commit | mode | trials | seeds | " + " | ".join(
               AXIS_LABEL[a] for a in ("arch", "tokens", "bits", "joint")) + " |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        s = r["searches"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['trials']} | "
                   f"{len(r['seeds'])} | " + " | ".join(
                       f"{f(s[a]['hv_mean'], '.4f')} ± {f(s[a]['hv_std'], '.4f')}"
                       + (" (grid)" if a == "bits" else "")
                       for a in ("arch", "tokens", "bits", "joint")) + " |")
    r = pick_record(recs)
    assert r is not None
    out += ["", _which(r), "", "| search | seed | distinct configs | front | HV | seconds |",
            "|---|---|---|---|---|---|"]
    for a in ("arch", "tokens", "bits", "joint"):
        for run in r["searches"][a]["runs"]:
            # trial_seconds: the trials' own wall time, also when an earlier section ran them
            secs = run.get("trial_seconds", run["seconds"])
            out.append(f"| {AXIS_LABEL[a]} | {run['seed'] if run['seed'] is not None else 'grid'}"
                       f" | {run['n_evaluated']} | {run['front']} | {f(run['hv'], '.4f')} | "
                       f"{f(secs, '.0f')} |")
    out += ["", *kept_accuracy_table(r)]
    fig = figdir / "fig_fronts.png"
    if _fig_fronts(r, fig):
        out += ["", f"![fronts of the four searches]({fig.name})"]
    out += ["", axes_paragraph(r), ""]
    if r.get("long"):
        out += long_budget(r, figdir / "fig_budget.png")
    return out


def kept_accuracy_table(r: dict[str, Any]) -> list[str]:
    """Per search, the largest latency and energy cuts at kept validation accuracy."""
    base = r["baseline"]
    out = ["Largest cut of each cost among the configs whose validation accuracy is at least "
           f"the baseline's minus 1 point ({f(base['accuracy'] - 0.01)}), as baseline / value, "
           "mean ± std over seeds (the hypervolume folds these together, and a cost already "
           "cut to a few % of the baseline has little volume left to gain):", "",
           "| search | batch-1 latency cut | energy cut |", "|---|---|---|"]
    for a in ("arch", "tokens", "bits", "joint"):
        cuts = _kept_cut_lists(r, a)
        cells = []
        for k in ("latency_ms", "energy_mj"):
            mean, std, n = mean_std(cuts.get(k, []))
            cells.append("none kept" if not n else
                         f"{fx(mean)} ± {f(std, '.2f')}" if n > 1 else fx(mean))
        out.append(f"| {AXIS_LABEL[a]} | " + " | ".join(cells) + " |")
    return out


def long_budget(r: dict[str, Any], fig: Path | None) -> list[str]:
    """The arch and joint studies continued past the equal budget (full runs only); the
    figure is drawn to ``fig`` unless it is None."""
    lg = r["long"]
    marks = sorted({r["trials"], (r["trials"] + lg["trials"]) // 2, lg["trials"]})
    out = [f"**With more budget.** The arch and joint studies of seeds "
           f"{', '.join(str(s) for s in lg['seeds'])} continued to {lg['trials']} trials "
           f"(the first {r['trials']} are the table's); hypervolume after each count of trials, "
           f"mean ± std over those seeds:", "",
           "| search | " + " | ".join(f"{m} trials" for m in marks) + " |",
           "|---|" + "---|" * len(marks)]
    means: dict[str, list[float]] = {}
    for a in ("arch", "joint"):
        hists = lg["axes"][a]["hv_histories"]
        cells = []
        for m in marks:
            vals = [h[min(m, len(h)) - 1] for h in hists if h]
            mean, std, _ = mean_std(vals)
            cells.append(f"{f(mean, '.4f')} ± {f(std, '.4f')}")
            means.setdefault(a, []).append(_num(mean))
        out.append(f"| {AXIS_LABEL[a]} | " + " | ".join(cells) + " |")
    if fig is not None and _fig_budget(r, fig):
        out += ["", f"![hypervolume vs trials, arch and joint]({fig.name})"]
    last = {a: v[-1] for a, v in means.items()}
    lead = "joint" if last["joint"] > last["arch"] else "arch"
    out += ["", f"After {lg['trials']} trials {AXIS_LABEL[lead]} leads "
            f"({f(last['joint'], '.4f')} joint vs {f(last['arch'], '.4f')} architecture only). "
            f"These are {len(lg['seeds'])} seeds, so read the gap against the ± spread.", ""]
    return out


def _fig_budget(r: dict[str, Any], path: Path) -> bool:
    plt = _plt()
    lg = r["long"]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for a, color in (("arch", "C0"), ("joint", "C3")):
        hists = [h for h in lg["axes"][a]["hv_histories"] if h]
        for h in hists:
            ax.plot(range(1, len(h) + 1), h, color=color, alpha=0.3, lw=1)
        k = min(len(h) for h in hists)
        mean = [sum(h[i] for h in hists) / len(hists) for i in range(k)]
        ax.plot(range(1, k + 1), mean, color=color, lw=2, label=f"{AXIS_LABEL[a]} (mean)")
    ax.axvline(r["trials"], color="k", ls=":", lw=1)
    ax.set_xlabel("trials")
    ax.set_ylabel("normalised hypervolume")
    ax.set_title("Hypervolume vs trials (WM-811K, NSGA-II; thin: single seeds)")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def axes_paragraph(r: dict[str, Any]) -> str:
    s = r["searches"]
    hv = {a: _num(s[a]["hv_mean"]) for a in s}
    joint = hv["joint"]
    singles = [a for a in ("arch", "tokens", "bits")]
    best = max(singles, key=lambda a: hv[a])
    text = [f"With {r['trials']} trials per search and {len(r['seeds'])} seed(s), the ranking "
            f"by hypervolume is {ranking(hv, AXIS_LABEL)}."]
    if joint > hv[best]:
        ratio = joint / hv[best] if hv[best] > 0 else math.inf
        gap = joint - hv[best]
        spread = _num(s["joint"]["hv_std"]) + _num(s[best]["hv_std"])
        text.append(f"Joint search beats the best single axis ({AXIS_LABEL[best]}) by "
                    f"{f(gap, '.4f')} ({'inf' if math.isinf(ratio) else f(ratio, '.2f')}x)"
                    + (f", more than the sum of their seed standard deviations "
                       f"({f(spread, '.4f')})." if gap > spread and len(r['seeds']) > 1 else
                       f"; with {len(r['seeds'])} seed(s) the seed-to-seed spread "
                       f"({f(spread, '.4f')}) " + ("is as large as the gap, so the win is "
                                                   "not resolved." if gap <= spread
                                                   else "is smaller than the gap.")))
    else:
        text.append(f"Joint search does NOT beat the best single axis ({AXIS_LABEL[best]}, "
                    f"{f(hv[best], '.4f')} vs joint {f(joint, '.4f')}) at this budget.")
        text += _why_joint_loses(r, best)
    tok = s["tokens"]["runs"]
    if tok and tok[0].get("points"):
        il = r["point_fields"].index("latency_ms")
        best = min(p[il] for p in tok[0]["points"])
        gain = 1 - best / _num(r["baseline"]["latency_ms"])
        text.append(f"Token merging alone reaches {f(hv['tokens'], '.4f')}: at the largest "
                    f"architecture its fastest config is {f(gain * 100, '.0f')}% faster than "
                    f"the baseline at batch 1.")
    text.append("The figure shows each search's (accuracy, latency) front for seed 0; the "
                "hypervolume also counts modelled energy, which the plot does not show.")
    text.append("The bits-only figure is an exhaustive grid of the valid (w, a) pairs, so it "
                "has no seed spread; the hypervolume counts only configs cheaper than the "
                "baseline on every objective, and latency is measured on a shared machine, so "
                "a front can move between runs by the timing noise of section 6.")
    return " ".join(text)


def _kept_cut_lists(r: dict[str, Any], axis: str) -> dict[str, list[float]]:
    """Per seed, the largest latency and energy cut at kept validation accuracy."""
    fields = r.get("point_fields")
    cuts: dict[str, list[float]] = {}
    for run in r["searches"][axis]["runs"] if fields else []:
        pts = [dict(zip(fields, p, strict=True)) for p in run.get("points", [])]
        for k, v in best_at_kept_accuracy(pts, r["baseline"]).items():
            cuts.setdefault(k, []).append(v)
    return cuts


def _kept_cuts(r: dict[str, Any], axis: str) -> dict[str, float]:
    """Mean over seeds of ``_kept_cut_lists``."""
    return {k: mean_std(v)[0] for k, v in _kept_cut_lists(r, axis).items()}


def _why_joint_loses(r: dict[str, Any], best: str) -> list[str]:
    """Where the joint front falls short of the best single axis, from the kept-accuracy cuts."""
    j, b, bits = _kept_cuts(r, "joint"), _kept_cuts(r, best), _kept_cuts(r, "bits")
    if not j or not b:
        return []
    out = [f"At kept validation accuracy, joint search cuts energy by {fx(j['energy_mj'])} "
           f"against {fx(b['energy_mj'])} for {AXIS_LABEL[best]}, but batch-1 latency only by "
           f"{fx(j['latency_ms'])} against {fx(b['latency_ms'])}."]
    if bits and _num(bits.get("latency_ms")) < 1.5:
        out.append(f"On this CPU the bit-width axis barely changes latency (bits only, at the "
                   f"largest architecture: {fx(bits['latency_ms'])} at most), while the "
                   f"hypervolume, normalised to the baseline, has little volume left to gain "
                   f"once energy is below a few % of it; the joint search spends its trials on a "
                   f"larger space for an axis the hypervolume hardly rewards here.")
    return out


def _fig_fronts(r: dict[str, Any], path: Path) -> bool:
    plt = _plt()
    fields = r["point_fields"]
    ia, il, iff = fields.index("accuracy"), fields.index("latency_ms"), \
        fields.index("feasible")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a, color in zip(("arch", "tokens", "bits", "joint"), ("C0", "C1", "C2", "C3"),
                        strict=True):
        runs = r["searches"][a]["runs"]
        if not runs:
            continue
        pts = [p for p in runs[0]["points"] if p[iff]]
        ax.scatter([p[il] for p in pts], [p[ia] for p in pts], s=10, alpha=0.3, color=color)
        front = _front2d([(p[il], p[ia]) for p in pts])
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color=color,
                marker="o", ms=4,
                label=f"{AXIS_LABEL[a]} (HV {f(r['searches'][a]['hv_mean'], '.3f')})")
    b = r["baseline"]
    ax.scatter([b["latency_ms"]], [b["accuracy"]], marker="*", s=120, color="k",
               label="baseline (max_config)")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency (ms, ONNX Runtime CPU, log)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Fronts, accuracy vs latency (seed 0, {mode_of(r)} run)")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def _front2d(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (min latency, max accuracy) points, by latency."""
    out: list[tuple[float, float]] = []
    for x, y in sorted(pts, key=lambda p: (p[0], -p[1])):
        if not out or y > out[-1][1]:
            out.append((x, y))
    return out
