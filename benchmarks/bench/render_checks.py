"""RESULTS.md sections 3-6 (samplers, weight sharing, fidelity, cost model) and their figures.

Same conventions as :mod:`bench.render`: tables list every record; details and figures describe
the record that ``pick_record`` chooses; the only prose is fixed captions.
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
            "| sampler | final HV | trial reaching 90% of its final HV | random startup trials "
            "| guided trials |", "|---|---|---|---|---|"]
    for x in sampler_rows(r):
        opts = r["samplers"][x["sampler"]].get("options") or {}
        name = x["sampler"] + (f" ({', '.join(f'{k} {v}' for k, v in opts.items())})"
                               if opts else "")
        out.append(f"| {name} | {f(x['final_hv'], '.4f')} | {x['trial_90'] or 'n/a'} | "
                   f"{x['startup']} | {x['guided']} |")
    return out + ["", "Best first. One seed per sampler: the order is indicative only "
                  "(differences of a few thousandths are within section 2's seed-to-seed "
                  "variation), and with few guided trials it mostly compares random starts.", ""]


def sampler_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each sampler of a record, best final hypervolume first: the trial at which it reached
    90% of its own final hypervolume (None if never positive), its random startup trials and
    the guided ones after them."""
    rows = []
    for n, v in r["samplers"].items():
        h = [_num(x) for x in v["hv_history"]]
        target = 0.9 * h[-1] if h and h[-1] > 0 else math.nan
        startup = v.get("startup_trials", 0)
        rows.append({"sampler": n, "final_hv": _num(v["final_hv"]), "startup": startup,
                     "guided": max(0, r["trials"] - startup),
                     "trial_90": next((i + 1 for i, x in enumerate(h) if x >= target), None)})
    return sorted(rows, key=lambda x: -x["final_hv"])


# ---- sections 4 and 5 --------------------------------------------------------------------
def sharing(recs: list[dict[str, Any]]) -> list[str]:
    if not recs:
        return []
    out = ["## 4. Why weight sharing: inherited weights vs training from scratch (WM-811K)", "",
           "| date | commit | mode | config | epochs | inherited eval s | of which costs s | "
           "scratch train+eval s | speed-up | inherited test acc [95% CI] | "
           "scratch test acc [95% CI] | inherited - scratch | 95% CIs overlap |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        i, s = r["inherited"], r["scratch"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | `{r['config_key']}` | "
                   f"{r['epochs']} | {f(i['seconds'], '.1f')} | "
                   f"{f(i.get('cost_seconds'), '.1f')} | {f(s['seconds'], '.0f')} | "
                   f"{fx(r['speedup'])} | {acc_ci(i['test'][0], i['test'][1:])} | "
                   f"{acc_ci(s['test'][0], s['test'][1:])} | "
                   f"{f((_num(i['test'][0]) - _num(s['test'][0])) * 100, '+.1f')} pts | "
                   f"{'yes' if _overlap(i['test'], s['test']) else 'no'} |")
    r = pick_record(recs)
    assert r is not None
    return out + ["", _which(r), "", "One subnet, one seed; the supernet's own training is paid "
                  "once and not included (it is amortised over every trial of every search).", ""]


def _overlap(a: list[Any], b: list[Any]) -> bool:
    """Whether two [acc, lower, upper] intervals overlap."""
    return not (_num(a[1]) > _num(b[2]) or _num(b[1]) > _num(a[2]))


def fidelity(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 5. Supernet fidelity: inherited vs standalone ranking", ""]
    by_ds: dict[str, list[dict[str, Any]]] = {}
    for r in recs:  # records before DeepPCB carry no dataset: WM-811K
        by_ds.setdefault(r.get("dataset", "wm811k"), []).append(r)
    for ds, rs in sorted(by_ds.items(), key=lambda kv: kv[0] != "wm811k"):
        out += _fidelity_dataset(ds, rs, figdir)
    return out


def _fidelity_dataset(ds: str, recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    name = {"wm811k": "WM-811K", "deeppcb": "DeepPCB"}.get(ds, ds)
    out = [f"### {name}", "",
           "| date | commit | mode | configs | standalone epochs | supernet epochs | stem | "
           "Kendall tau (test) | p | Kendall tau (val) | p | mean inherited - standalone test |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {len(r['configs'])} | "
                   f"{r['epochs']} | {r.get('supernet_epochs', 'n/a')} | "
                   f"{r.get('supernet_stem', 'patch')} | "
                   f"{f(r['kendall_tau_test'], '.2f')} | {f(r['p_test'], '.3f')}"
                   f" | {f(r['kendall_tau_val'], '.2f')} | {f(r['p_val'], '.3f')} | "
                   f"{f(mean_gap(r) * 100, '+.1f')} pts |")
    r = pick_record(recs)
    assert r is not None
    out += ["", _which(r), "", "| config | MACs | inherited val | inherited test | "
            "standalone val | standalone test | train s |", "|---|---|---|---|---|---|---|"]
    for c in r["configs"]:
        out.append(f"| `{c['config_key']}` | {int(c['macs']):,} | {f(c['inherited_val'])} | "
                   f"{f(c['inherited_test'])} | {f(c['standalone_val'])} | "
                   f"{f(c['standalone_test'])} | {f(c['train_seconds'], '.0f')} |")
    if r.get("fp32_only"):
        q = r["fp32_only"]
        n_q = len(r["configs"]) - q["configs"]
        out += ["", f"The {n_q} rows at {' and '.join(r.get('fid_precisions', []))} are "
                f"fidelity configs whose standalone weights are on this machine, quantized "
                f"after training exactly as the search quantizes a subnet's inherited weights "
                f"(same precision plan, post-training quantization and calibration batches), "
                f"so only the weights differ. Over the {q['configs']} fp32 rows alone: Kendall "
                f"tau {f(q['kendall_tau_test'], '.2f')} (p {f(q['p_test'], '.3f')}) on test, "
                f"{f(q['kendall_tau_val'], '.2f')} (p {f(q['p_val'], '.3f')}) on val."]
    fig = figdir / ("fig_fidelity.png" if ds == "wm811k" else f"fig_fidelity_{ds}.png")
    plt = _plt()
    fg, ax = plt.subplots(figsize=(4.8, 4.2))
    xs = [c["standalone_test"] for c in r["configs"]]
    ys = [c["inherited_test"] for c in r["configs"]]
    ax.scatter(xs, ys)
    for c, x, y in zip(r["configs"], xs, ys, strict=True):
        ax.annotate(c["config_key"].split("_w")[0], (x, y), fontsize=6)
    ax.set_xlabel(f"standalone test accuracy ({r['epochs']} epochs)")
    ax.set_ylabel("inherited-weight test accuracy")
    ax.set_title(f"{name}: Kendall tau {f(r['kendall_tau_test'], '.2f')} "
                 f"(p {f(r['p_test'], '.2f')})")
    save_figure(fg, fig)
    out += ["", f"![inherited vs standalone accuracy, {name}]({fig.name})", ""]
    if "standalone_trained_on" in r:
        out += [f"Standalone models: `make bench-train` (benchmarks/bench_train.py), each "
                f"trained for the supernet's {r['supernet_epochs']} epochs on "
                f"{' and '.join(_as_list(r['standalone_trained_on']))} and scored there in "
                f"fp32 (train s: that machine's); "
                + _trained_of_planned(r) + " Inherited accuracies are computed here. "
                + ("Precision rows: see above." if r.get("fp32_only") else
                   "All configs are fp32 (the bit-width axis is not covered: a standalone "
                   "integer model would need quantization-aware training)."), ""]
    else:
        out += ["With n configs tau moves in steps of 4/(n(n-1)) and p < 0.05 needs "
                "near-perfect agreement; short standalone training ranks early learning speed "
                "as much as final accuracy; all configs are fp32 with r = 0 (bit-width and "
                "token axes not covered).", ""]
    return out


def _trained_of_planned(r: dict[str, Any]) -> str:
    """How many of the planned fidelity configs a record holds (fp32 rows: one per job)."""
    trained = r["fp32_only"]["configs"] if r.get("fp32_only") else len(r["configs"])
    planned = r.get("planned_configs")
    if planned is None or trained >= planned:
        return f"all {trained} planned configs were trained."
    return (f"{trained} of the {planned} planned configs were trained (the rest did not "
            "finish: a run's deadline, or a run stopped by hand).")


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list) else [x]


def mean_gap(r: dict[str, Any]) -> float:
    """Mean inherited-weight minus standalone test accuracy over a record's configs."""
    c = r["configs"]
    return sum(_num(x["inherited_test"]) - _num(x["standalone_test"]) for x in c) / max(1, len(c))


# ---- section 6 ---------------------------------------------------------------------------
def costmodel(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 6. Cost-model fidelity: analytic costs vs measured latency (WM-811K)", "",
           "| date | commit | mode | configs | rho(latency, MACs) | p | rho(latency, BitOPs) | "
           "p | repeated timings | CV: max_config | min_config |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        rep = r["repeat"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['n_configs']} | "
                   f"{f(r['rho_macs'], '.2f')} | {f(r['p_macs'], '.2g')} | "
                   f"{f(r['rho_bitops'], '.2f')} | {f(r['p_bitops'], '.2g')} | "
                   f"{len(rep['max_config'].get('latencies_ms', []))} | "
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
    out += ["", f"![latency vs MACs]({fig.name})", "",
            "An analytic count ranks configs of one precision (per-runtime rows); across "
            "precisions one MAC costs differently on int8, fp32 and bf16 kernels. Latency "
            "differences within about twice the CV are noise on the recorded machine.", ""]
    return out
