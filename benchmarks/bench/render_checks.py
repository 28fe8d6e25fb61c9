"""RESULTS.md sections 3-6 (samplers, weight sharing, fidelity, cost model) and their figures.

Same conventions as :mod:`bench.render`: tables list every record; details, figures and the
templated paragraph describe the record that ``pick_record`` chooses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.render import (
    _num,
    _plt,
    _which,
    acc_ci,
    f,
    fx,
    mode_of,
    pick_record,
    ranking,
    save_figure,
)


# ---- section 3 ---------------------------------------------------------------------------
def samplers(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    names = ("axiswise", "nsga2", "tpe", "gp", "random")
    out = ["## 3. Samplers on the joint space (WM-811K)", "",
           "Final normalised hypervolume per sampler (one seed each):", "",
           "| date | commit | mode | trials | " + " | ".join(names) + " |",
           "|---|---|---|---|" + "---|" * len(names)]
    for r in recs:
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['trials']} | " + " | ".join(
            f(r["samplers"][n]["final_hv"], ".4f") if n in r["samplers"] else "n/a"
            for n in names) + " |")
    r = pick_record(recs)
    assert r is not None
    fig = figdir / "fig_samplers.png"
    plt = _plt()
    fg, ax = plt.subplots(figsize=(6.5, 4))
    for n, v in r["samplers"].items():
        h = v["hv_history"]
        ax.plot(range(1, len(h) + 1), h, label=n)
    ax.set_xlabel("trials")
    ax.set_ylabel("normalised hypervolume")
    ax.set_title(f"Hypervolume vs trials ({mode_of(r)} run)")
    ax.legend(fontsize=8)
    save_figure(fg, fig)
    out += ["", _which(r), "", f"![hypervolume vs trials]({fig.name})", "",
            samplers_paragraph(r), ""]
    return out


def samplers_paragraph(r: dict[str, Any]) -> str:
    s = r["samplers"]
    fin = {n: _num(v["final_hv"]) for n, v in s.items()}
    text = [f"After {r['trials']} trials the final hypervolumes rank {ranking(fin)}."]
    half = {}
    for n, v in s.items():
        h = [_num(x) for x in v["hv_history"]]
        target = 0.9 * h[-1] if h and h[-1] > 0 else math.nan
        half[n] = next((i + 1 for i, x in enumerate(h) if x >= target), None) \
            if math.isfinite(target) else None
    reached = [f"{n} at trial {t}" for n, t in half.items() if t is not None]
    if reached:
        text.append("Each reached 90% of its own final hypervolume " + ", ".join(reached) + ".")
    guided = {n: max(0, r["trials"] - v.get("startup_trials", 0)) for n, v in s.items()}
    few = [n for n, g in guided.items() if n != "random" and g < 20]
    if few:
        text.append("Weakness: " + ", ".join(f"{n} had {guided[n]} guided trials after its "
                                             f"{s[n].get('startup_trials', 0)} random ones"
                                             for n in few)
                    + ", so this budget mostly compares random starts.")
    text.append("One seed per sampler: the ranking is indicative only; differences of a few "
                "thousandths are within the run-to-run variation of section 2.")
    return " ".join(text)


# ---- sections 4 and 5 --------------------------------------------------------------------
def sharing(recs: list[dict[str, Any]]) -> list[str]:
    if not recs:
        return []
    out = ["## 4. Why weight sharing: inherited weights vs training from scratch (WM-811K)", "",
           "| date | commit | mode | config | epochs | inherited eval s | scratch train+eval s |"
           " speed-up | inherited test acc [95% CI] | scratch test acc [95% CI] |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        i, s = r["inherited"], r["scratch"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | `{r['config_key']}` | "
                   f"{r['epochs']} | {f(i['seconds'], '.1f')} | {f(s['seconds'], '.0f')} | "
                   f"{fx(r['speedup'])} | {acc_ci(i['test'][0], i['test'][1:])} | "
                   f"{acc_ci(s['test'][0], s['test'][1:])} |")
    r = pick_record(recs)
    assert r is not None
    i, s = r["inherited"], r["scratch"]
    diff = (_num(i["test"][0]) - _num(s["test"][0])) * 100
    overlap = not (_num(i["test"][1]) > _num(s["test"][2]) or
                   _num(s["test"][1]) > _num(i["test"][2]))
    text = (f"One evaluation with inherited weights took {f(i['seconds'], '.1f')} s (of which "
            f"{f(i['cost_seconds'], '.1f')} s measuring costs), against "
            f"{f(s['seconds'], '.0f')} s to train the same subnet for {r['epochs']} epochs and "
            f"evaluate it: {fx(r['speedup'])} faster per candidate. Inherited weights score "
            f"{f(_num(i['test'][0]), '.3f')} on test, the trained-from-scratch subnet "
            f"{f(_num(s['test'][0]), '.3f')} ({f(diff, '+.1f')} points for inheritance); the "
            f"95% intervals "
            f"{'overlap, so the difference is not resolved' if overlap else 'do not overlap'}. "
            f"The comparison is one subnet and one seed; the supernet's own training cost "
            f"is paid once and is not included (it is amortised over every trial of every "
            f"search).")
    return out + ["", _which(r), "", text, ""]


def fidelity(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 5. Supernet fidelity: inherited vs standalone ranking (WM-811K)", "",
           "| date | commit | mode | configs | standalone epochs | Kendall tau (test) | p | "
           "Kendall tau (val) | p |", "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {len(r['configs'])} | "
                   f"{r['epochs']} | {f(r['kendall_tau_test'], '.2f')} | {f(r['p_test'], '.3f')}"
                   f" | {f(r['kendall_tau_val'], '.2f')} | {f(r['p_val'], '.3f')} |")
    r = pick_record(recs)
    assert r is not None
    out += ["", _which(r), "", "| config (fp32, r = 0) | MACs | inherited val | inherited test | "
            "standalone val | standalone test | train s |", "|---|---|---|---|---|---|---|"]
    for c in r["configs"]:
        out.append(f"| `{c['config_key']}` | {int(c['macs']):,} | {f(c['inherited_val'])} | "
                   f"{f(c['inherited_test'])} | {f(c['standalone_val'])} | "
                   f"{f(c['standalone_test'])} | {f(c['train_seconds'], '.0f')} |")
    fig = figdir / "fig_fidelity.png"
    plt = _plt()
    fg, ax = plt.subplots(figsize=(4.8, 4.2))
    xs = [c["standalone_test"] for c in r["configs"]]
    ys = [c["inherited_test"] for c in r["configs"]]
    ax.scatter(xs, ys)
    for c, x, y in zip(r["configs"], xs, ys, strict=True):
        ax.annotate(c["config_key"].split("_r")[0], (x, y), fontsize=6)
    ax.set_xlabel(f"standalone test accuracy ({r['epochs']} epochs)")
    ax.set_ylabel("inherited-weight test accuracy")
    ax.set_title(f"Kendall tau {f(r['kendall_tau_test'], '.2f')} (p {f(r['p_test'], '.2f')})")
    save_figure(fg, fig)
    out += ["", f"![inherited vs standalone accuracy]({fig.name})", "", fidelity_paragraph(r), ""]
    return out


def fidelity_paragraph(r: dict[str, Any]) -> str:
    tau, p = _num(r["kendall_tau_test"]), _num(r["p_test"])
    n = len(r["configs"])
    strength = "undefined (an accuracy column is constant)" if not math.isfinite(tau) else \
        "strong" if tau >= 0.6 else "moderate" if tau >= 0.3 else \
        "weak or no" if tau > -0.3 else "an inverted"
    sig = "significant at 5%" if p < 0.05 else "not significant at 5%" if math.isfinite(p) \
        else "no p-value"
    mean_gap = sum(c["inherited_test"] - c["standalone_test"] for c in r["configs"]) / max(1, n)
    return (f"Over {n} configs, inherited-weight test accuracy and accuracy after "
            f"{r['epochs']} standalone epochs agree with Kendall's tau {f(tau, '.2f')} "
            f"(p = {f(p, '.3f')}, {sig}): {strength} rank agreement "
            f"(validation split: tau {f(r['kendall_tau_val'], '.2f')}, p = "
            f"{f(r['p_val'], '.3f')}). Inherited weights score {f(abs(mean_gap) * 100, '.1f')} "
            f"points {'above' if mean_gap >= 0 else 'below'} the short standalone training on "
            f"average. Weaknesses: with {n} "
            f"configs tau moves in steps of about {f(2 / (n * (n - 1) / 2), '.2f')} and a p-value "
            f"below 0.05 needs near-perfect agreement; the standalone budget "
            f"({r['epochs']} epochs against the supernet's {r['supernet_epochs']}) ranks early "
            f"learning speed as much as final accuracy; all configs are fp32 with r = 0, so the "
            f"bit-width and token axes are not covered by this check.")


# ---- section 6 ---------------------------------------------------------------------------
def costmodel(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 6. Cost-model fidelity: analytic costs vs measured latency (WM-811K)", "",
           "| date | commit | mode | configs | rho(latency, MACs) | p | rho(latency, BitOPs) | "
           "p | CV of repeated timings: max_config | min_config |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        rep = r["repeat"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['n_configs']} | "
                   f"{f(r['rho_macs'], '.2f')} | {f(r['p_macs'], '.2g')} | "
                   f"{f(r['rho_bitops'], '.2f')} | {f(r['p_bitops'], '.2g')} | "
                   f"{f(rep['max_config']['cv'] * 100, '.1f')}% | "
                   f"{f(rep['min_config']['cv'] * 100, '.1f')}% |")
    r = pick_record(recs)
    assert r is not None
    out += ["", _which(r), "", "| runtime | configs | rho(latency, MACs) | rho(latency, BitOPs) |",
            "|---|---|---|---|"]
    for rt, v in r["per_runtime"].items():
        out.append(f"| {rt} | {v['n']} | {f(v.get('rho_macs'), '.2f')} | "
                   f"{f(v.get('rho_bitops'), '.2f')} |")
    fig = figdir / "fig_costmodel.png"
    plt = _plt()
    fg, ax = plt.subplots(figsize=(6, 4.2))
    for i, rt in enumerate(sorted({p[3] for p in r["points"]})):
        pts = [p for p in r["points"] if p[3] == rt]
        ax.scatter([p[0] for p in pts], [p[2] for p in pts], s=12, label=rt, color=f"C{i}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MACs per image")
    ax.set_ylabel("measured batch-1 latency (ms)")
    ax.set_title(f"rho {f(r['rho_macs'], '.2f')} over {r['n_configs']} configs")
    ax.legend(fontsize=8)
    save_figure(fg, fig)
    out += ["", f"![latency vs MACs]({fig.name})", "", costmodel_paragraph(r), ""]
    return out


def costmodel_paragraph(r: dict[str, Any]) -> str:
    rm, rb = _num(r["rho_macs"]), _num(r["rho_bitops"])
    better = "MACs" if rm >= rb else "BitOPs"
    rep = r["repeat"]
    cv_max, cv_min = _num(rep["max_config"]["cv"]), _num(rep["min_config"]["cv"])
    per = {rt: _num(v.get("rho_macs")) for rt, v in r["per_runtime"].items()}
    within = [f"{rt} {f(v, '.2f')}" for rt, v in per.items() if math.isfinite(v)]
    text = [f"Over {r['n_configs']} configs evaluated in the run"
            + (f" ({r['added_random']} random ones added)" if r.get("added_random") else "")
            + f", Spearman's rho between measured latency and MACs is {f(rm, '.2f')} "
            f"(p = {f(r['p_macs'], '.2g')}) and with BitOPs {f(rb, '.2f')} "
            f"(p = {f(r['p_bitops'], '.2g')}): {better} ranks latency better."]
    if within:
        finite = [v for v in per.values() if math.isfinite(v)]
        text.append("Within one runtime rho with MACs is " + ", ".join(within) + (
            "; pooling the runtimes lowers it, since one MAC costs differently on the int8, "
            "fp32 and bf16 kernels: an analytic count ranks configs of one precision, measured "
            "latency is needed across precisions." if rm < min(finite) else
            "; pooling the runtimes does not lower it in this run."))
    n_rep = len(rep["max_config"].get("latencies_ms", []))
    text.append(f"{n_rep} repeated latency measurements (each a median of the study's runs) "
                f"vary with a coefficient of variation of {f(cv_max * 100, '.1f')}% for "
                f"max_config and {f(cv_min * 100, '.1f')}% for min_config; latency differences "
                f"smaller than about {f(2 * max(cv_max, cv_min) * 100, '.0f')}% between two "
                f"configs are within noise on this machine"
                f" (load average {f((r.get('loadavg') or [math.nan])[0], '.1f')} on "
                f"{r.get('machine', '?').rsplit(' ', 2)[-2]} cores when recorded).")
    return " ".join(text)
