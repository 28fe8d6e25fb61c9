"""RESULTS.md sections and figures of the bench_* records (called by make_results.py).

Every table lists all raw records; the detail tables, the figures and the paragraph of a
section describe one record: the latest full run without budget overrides if there is one,
else the latest quick run without overrides, else the latest record. The paragraphs are
templates filled with the numbers of that record: nothing in them is written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import RATIO_KEYS, TARGET_KEYS, mean_std, target_verdict, verdict

REF_LABEL = {"deit_tiny": "DeiT-Tiny-shaped ViT", "resnet10t": "resnet10t (CNN)",
             "resnet10t_int8": "resnet10t int8 (CNN)",
             "supernet_max": "supernet max_config", "pick": "pick (joint search)"}
#: The pick rule of records that do not name theirs (before issue 13).
OLD_RULE = "test-vs-deit"
AXIS_LABEL = {"arch": "architecture only", "tokens": "tokens only", "bits": "bits only",
              "joint": "joint"}


# ---- formatting --------------------------------------------------------------------------
def ranking(values: dict[str, float], label: dict[str, str] | None = None,
            spec: str = ".4f") -> str:
    """'a (0.3) > b (0.2) = c (0.2)', best first, '=' where the printed values tie."""
    order = sorted(values, key=lambda k: -_num(values[k]))
    parts = []
    for i, k in enumerate(order):
        if i:
            same = f(values[order[i - 1]], spec) == f(values[k], spec)
            parts.append("=" if same else ">")
        parts.append(f"{(label or {}).get(k, k)} ({f(values[k], spec)})")
    return " ".join(parts)


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def f(x: Any, spec: str = ".3f") -> str:
    v = _num(x)
    return "n/a" if not math.isfinite(v) else format(v, spec)


def fx(x: Any) -> str:
    """A ratio: 1 decimal from 10x up, 2 decimals from 0.1x, 2 significant digits below."""
    v = _num(x)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.1f}x" if v >= 10 else f"{v:.2f}x" if v >= 0.1 else f"{v:.2g}x"


def acc_ci(acc: Any, ci: Sequence[Any] | None) -> str:
    if ci is None or len(ci) != 2:
        return f(acc, ".3f")
    return f"{f(acc, '.3f')} [{f(ci[0], '.3f')}, {f(ci[1], '.3f')}]"


def mode_of(r: dict[str, Any]) -> str:
    return r.get("mode", "?") + ("*" if r.get("overrides") else "")


def pick_record(recs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The record the detail tables, figures and paragraph describe."""
    # A full run beats a quick one even with a budget overridden by hand (marked full*).
    for want, clean in (("full", True), ("full", False), ("quick", True)):
        c = [r for r in recs if r.get("mode") == want and (not clean or not r.get("overrides"))]
        if c:
            return c[-1]
    return recs[-1] if recs else None


def _which(r: dict[str, Any]) -> str:
    return (f"Details below: the {mode_of(r)} run {r.get('run_id')} of {r.get('date')} "
            f"(commit {r.get('commit')}{', uncommitted changes' if r.get('dirty') else ''}; "
            f"{r.get('machine')}; load average {f((r.get('loadavg') or [math.nan])[0], '.1f')}"
            f"; section took {f(r.get('seconds'), '.0f')} s).")


# ---- summary -----------------------------------------------------------------------------
#: Budget entries that shorten training on each dataset of the headline.
_TRAINING_KEYS = {"wm811k": ("wm_epochs",), "quickstart": ("syn_baseline_epochs",)}


def _evidence(r: dict[str, Any], dataset: str) -> str:
    """Why a headline record's verdicts are not evidence, if they are not."""
    if r.get("mode") != "full":
        return " (reduced budgets: not evidence)"
    cut = [k for k in _TRAINING_KEYS.get(dataset, ()) if (r.get("overrides") or {}).get(k)]
    return f" (reduced by hand: {', '.join(cut)}; not evidence)" if cut else ""
def headline_record(recs: Sequence[dict[str, Any]], dataset: str) -> dict[str, Any] | None:
    """The headline record of ``dataset`` that RESULTS.md describes: as :func:`pick_record`,
    among the records of the newest pick rule (a record of an older rule answers another
    question, whatever its budget)."""
    mine = [r for r in recs if r.get("dataset") == dataset]
    rule = next((r["pick"].get("rule_id") for r in reversed(mine)
                 if r["pick"].get("rule_id")), None)
    return pick_record([r for r in mine if r["pick"].get("rule_id", OLD_RULE) == rule]
                       if rule else mine)


def summary(all_recs: dict[str, list[dict[str, Any]]]) -> list[str]:
    rows = []
    for ds in ("wm811k", "quickstart"):
        r = headline_record(all_recs.get("headline", []), ds)
        if r is None:
            continue
        rat = r["ratios"]["deit_tiny"]
        run = f"{mode_of(r)} {r['date']}{_evidence(r, ds)}"
        for k in TARGET_KEYS:
            rows.append(f"| >= 10x {k} vs DeiT-Tiny shape | {ds} | {fx(rat.get(k))} | "
                        f"{verdict(_num(rat.get(k)))} | {run} |")
        p = r["models"]["pick"]
        if r.get("cnn_targets"):
            cnn = r["models"]["resnet10t"]
            for t in r["cnn_targets"]:
                shown = (f"{f(p.get('test_accuracy'))} vs {f(cnn.get('test_accuracy'))}"
                         if t["key"].startswith("accuracy") else fx(t["value"]))
                rows.append(f"| {t['claim']} | {ds} | {shown} | {target_verdict(t)} | {run} |")
            q8 = r["ratios"].get("resnet10t_int8") or {}
            rows.append(f"| throughput vs resnet10t int8 (no target) | {ds} | "
                        f"{fx(q8.get('throughput'))} | reported | {run} |")
            continue
        rows.append(f"| accuracy kept (>= DeiT-Tiny test - 1 pt) | {ds} | "
                    f"{f(p.get('test_accuracy'))} vs {f(r['models']['deit_tiny']['test_accuracy'])}"
                    f" | {'met' if r['pick']['rule_met'] else 'not met'} | {run} |")
    ax = pick_record(all_recs.get("axes", []))
    if ax is not None:
        s = ax["searches"]
        joint = _num(s["joint"]["hv_mean"])
        best = max((a for a in ("arch", "tokens", "bits")), key=lambda a: _num(s[a]["hv_mean"]))
        ok = joint > _num(s[best]["hv_mean"])
        rows.append(f"| joint search beats single-axis (hypervolume) | wm811k | "
                    f"joint {f(joint, '.4f')} vs {AXIS_LABEL[best]} "
                    f"{f(s[best]['hv_mean'], '.4f')} | {'met' if ok else 'not met'} | "
                    f"{mode_of(ax)} {ax['date']} |")
        if ax.get("long"):
            lg = ax["long"]
            fin = {a: mean_std([h[-1] for h in lg["axes"][a]["hv_histories"] if h])[0]
                   for a in ("arch", "joint")}
            rows.append(f"| ... continued to {lg['trials']} trials "
                        f"({len(lg['seeds'])} seed(s)) | wm811k | "
                        f"joint {f(fin['joint'], '.4f')} vs {AXIS_LABEL['arch']} "
                        f"{f(fin['arch'], '.4f')} | "
                        f"{'met' if _num(fin['joint']) > _num(fin['arch']) else 'not met'} | "
                        f"{mode_of(ax)} {ax['date']} |")
    if not rows:
        return []
    return ["## Summary", "", "| claim | dataset | measured | verdict | run |",
            "|---|---|---|---|---|", *rows, "",
            "Verdicts come from the runs described in the sections below. A quick run uses "
            "reduced budgets (under-trained supernet and references: see each section), so its "
            "verdicts only show that the pipeline runs; only a full run (`make bench`) is "
            "evidence for or against a claim.", ""]


# ---- section 1 ---------------------------------------------------------------------------
def headline(recs: list[dict[str, Any]], figdir: Path) -> list[str]:
    if not recs:
        return []
    out = ["## 1. Headline: the paper's >10x claims against fixed references", "",
           "All runs (ratios of the pick over the DeiT-Tiny-shaped ViT, then over resnet10t; "
           "> 1 = pick better). The pick rule: `val-vs-resnet10t` is the fastest Pareto member "
           "whose validation accuracy is >= resnet10t's - 1 point (else the most accurate on "
           "validation); `test-vs-deit` (older runs) chose on test accuracy against "
           "DeiT-Tiny's.", "",
           "| date | commit | mode | dataset | epochs (supernet / refs) | pick rule | "
           "pick test acc | DeiT test acc | resnet10t test acc | throughput | params | MACs | "
           "energy | latency | throughput vs resnet10t | rule met |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        q, m = r["ratios"]["deit_tiny"], r["models"]
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['dataset']} | "
                   f"{r['supernet_epochs']} / {r['baseline_epochs']} | "
                   f"{r['pick'].get('rule_id', OLD_RULE)} | "
                   f"{f(m['pick']['test_accuracy'])} | {f(m['deit_tiny']['test_accuracy'])} | "
                   f"{f(m['resnet10t']['test_accuracy'])} | {fx(q['throughput'])} | "
                   f"{fx(q['params'])} | {fx(q['macs'])} | {fx(q['energy'])} | "
                   f"{fx(q['latency'])} | {fx(r['ratios']['resnet10t']['throughput'])} | "
                   f"{'yes' if r['pick']['rule_met'] else 'no'} |")
    out.append("")
    shown = [x for x in (headline_record(recs, ds) for ds in ("wm811k", "quickstart"))
             if x is not None]
    for r in shown:
        refs = [t for t in ("pick", "supernet_max", "deit_tiny", "resnet10t", "resnet10t_int8")
                if t in r["models"]]
        out += [f"### {r['dataset']}", "", _which(r), "",
                "| model | val acc | test acc [95% CI] | params | MACs | BitOPs | bytes | "
                "latency ms | img/s | energy mJ | runtime | epochs |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for tag in refs:
            m = r["models"][tag]
            ep = m.get("epochs", r["supernet_epochs"] if tag != "pick" else "-")
            out.append(f"| {REF_LABEL[tag]} | {f(m.get('val_accuracy'))} | "
                       f"{acc_ci(m.get('test_accuracy'), m.get('test_ci'))} | "
                       f"{int(m['params']):,} | {int(m['macs']):,} | {int(m['bitops']):,} | "
                       f"{int(m['model_bytes']):,} | {f(m['latency_ms'], '.3f')} | "
                       f"{f(m['throughput_ips'], '.0f')} | {f(m['energy_model_mj'], '.4f')} | "
                       f"{m.get('latency_runtime', '')}{_contended(m)} | {ep} |")
        if r.get("cnn_targets"):
            out += ["", f"Targets against the CNN a user would otherwise deploy (every model "
                    f"measured in this run on {r.get('runtime')} at batch "
                    f"{r.get('batch_size')}):", "", "| target | measured | verdict |",
                    "|---|---|---|"]
            for t in r["cnn_targets"]:
                shown_v = f"{f(_num(t['value']) * 100, '+.1f')} pts" \
                    if t["key"].startswith("accuracy") else fx(t["value"])
                out.append(f"| {t['claim']} | {shown_v} | {target_verdict(t)} |")
            q8 = r["ratios"].get("resnet10t_int8") or {}
            out.append(f"| throughput vs resnet10t int8 (no target) | "
                       f"{fx(q8.get('throughput'))} | reported |")
        out += ["", "Pick over each reference (> 1 = pick better):", "",
                "| reference | " + " | ".join(n for _, n, _ in RATIO_KEYS) + " |",
                "|---|" + "---|" * len(RATIO_KEYS)]
        for tag in ("deit_tiny", "resnet10t", "resnet10t_int8", "supernet_max"):
            q = r["ratios"].get(tag)
            if q is not None:
                out.append(f"| {REF_LABEL[tag]} | "
                           + " | ".join(fx(q.get(n)) for _, n, _ in RATIO_KEYS) + " |")
        out += ["", f"Pick: trial {r['pick']['trial']} of study `{r['pick']['study']}` "
                f"(`{r['pick']['storage']}`), config `{r['models']['pick']['config']}`.", "",
                headline_paragraph(r), ""]
    fig = figdir / "fig_headline.png"
    if _fig_headline(shown, fig):
        out += [f"![ratios over the DeiT-Tiny-shaped ViT]({fig.name})", ""]
    return out


def _contended(m: dict[str, Any]) -> str:
    share = m.get("latency_contended")
    return f" (timed on busy cores: {f(_num(share) * 100, '.0f')}% foreign load)" if share else ""


def _pts(x: Any) -> str:
    return f(_num(x) * 100, "+.1f")


def _pick_sentences(r: dict[str, Any]) -> list[str]:
    """How the member was chosen and what it reached, for either pick rule."""
    ds, m, p = r["dataset"], r["models"], r["pick"]
    s = []
    if p.get("rule_id", OLD_RULE) == OLD_RULE:
        s.append(f"On {ds}, the pick (trial {p['trial']}, {m['pick'].get('latency_runtime')}) "
                 f"reaches {f(m['pick']['test_accuracy'])} test accuracy against the "
                 f"DeiT-Tiny-shaped ViT's {f(m['deit_tiny']['test_accuracy'])}")
        d = r.get("acc_diff_vs_deit") or [math.nan] * 3
        s[0] += (f" (paired difference {_pts(d[0])} points, 95% CI [{_pts(d[1])}, "
                 f"{_pts(d[2])}] on {r['test_images']} test images).")
        return s
    front = p.get("front") or []
    s.append(f"On {ds}, the pick is the fastest of the {p.get('front_size')} Pareto members "
             f"whose validation accuracy is at least resnet10t's "
             f"({f(p.get('reference_val_accuracy'))}) minus 1 point: trial {p['trial']} "
             f"({m['pick'].get('latency_runtime')}), validation "
             f"{f(m['pick'].get('val_accuracy'))}.")
    if not p["rule_met"]:
        best = max((_num(x.get("val_accuracy")) for x in front), default=math.nan)
        s[-1] = (f"On {ds}, no Pareto member's validation accuracy reached resnet10t's "
                 f"({f(p.get('reference_val_accuracy'))}) minus 1 point (the best of the "
                 f"{p.get('front_size')} members: {f(best)}, "
                 f"{f((_num(p.get('threshold')) - best) * 100, '.1f')} points short), so the "
                 f"pick is the most accurate member on validation: trial {p['trial']} "
                 f"({m['pick'].get('latency_runtime')}).")
    d = r.get("acc_diff_vs_resnet10t") or [math.nan] * 3
    e = r.get("acc_diff_vs_deit") or [math.nan] * 3
    s.append(f"Its test accuracy is {f(m['pick']['test_accuracy'])}, against resnet10t's "
             f"{f(m['resnet10t']['test_accuracy'])} (paired difference {_pts(d[0])} points, "
             f"95% CI [{_pts(d[1])}, {_pts(d[2])}]) and the DeiT-Tiny-shaped ViT's "
             f"{f(m['deit_tiny']['test_accuracy'])} ({_pts(e[0])} points, 95% CI "
             f"[{_pts(e[1])}, {_pts(e[2])}]), on {r['test_images']} test images.")
    for t in r.get("cnn_targets") or []:
        s.append(f"Target \"{t['claim']}\": {target_verdict(t)}.")
    i8, cnn = m.get("resnet10t_int8"), m["resnet10t"]
    if i8:
        s.append(f"resnet10t in int8 ({i8.get('latency_runtime')}; {i8.get('int8_layers')} of "
                 f"{i8.get('compute_layers')} compute layers run on 8-bit inputs; calibrated on "
                 f"{i8.get('calibration_images')} training images) reaches "
                 f"{f(i8.get('test_accuracy'))} test accuracy (agreeing with fp32 on "
                 f"{f(_num(i8.get('test_agreement_with_fp32')) * 100, '.1f')}% of test images) "
                 f"at {f(i8.get('throughput_ips'), '.0f')} img/s, "
                 f"{fx(_num(i8.get('throughput_ips')) / _num(cnn.get('throughput_ips')))} its "
                 f"fp32 throughput; the pick runs at "
                 f"{fx((r['ratios'].get('resnet10t_int8') or {}).get('throughput'))} of it.")
    return s


def headline_paragraph(r: dict[str, Any]) -> str:
    m, q = r["models"], r["ratios"]["deit_tiny"]
    met = [k for k in TARGET_KEYS if _num(q.get(k)) >= 10]
    missed = [k for k in TARGET_KEYS if k not in met]
    s = _pick_sentences(r)
    if met:
        s.append("The paper's 10x target against the DeiT-Tiny shape is met for " + ", ".join(
            f"{k} ({fx(q[k])})" for k in met) + ".")
    if missed:
        s.append("It is missed for " + ", ".join(
            f"{k} ({fx(q[k])}, {f(10 / _num(q[k]), '.1f')}x short)" for k in missed) + ".")
    old = r["pick"].get("rule_id", OLD_RULE) == OLD_RULE
    if old and not r["pick"]["rule_met"]:
        s.append("No Pareto member kept DeiT-Tiny's test accuracy within 1 point, so the pick "
                 "is the most accurate member and the accuracy condition of the claim fails.")
    if old:
        by_val = r["pick"].get("pick_by_val_trial")
        s.append("The member was chosen on test accuracy as the benchmark then specified; "
                 "choosing on validation accuracy instead would pick "
                 + ("the same trial." if by_val == r["pick"]["trial"] else
                    f"trial {by_val}." if by_val is not None else "no member."))
        cnn = r["ratios"]["resnet10t"]
        s.append(f"Against the small CNN (resnet10t, test {f(m['resnet10t']['test_accuracy'])}) "
                 f"the pick is {fx(cnn['throughput'])} in throughput, {fx(cnn['params'])} in "
                 f"parameters, {fx(cnn['macs'])} in MACs and {fx(cnn['energy'])} in energy.")
    s.append(f"Against the supernet's own max_config (test "
             f"{f(m['supernet_max']['test_accuracy'])}) the pick is "
             f"{fx(r['ratios']['supernet_max']['throughput'])} in throughput.")
    if not r["budget_matched"]:
        s.append(f"Weakness: the references were trained for {r['baseline_epochs']} epochs, "
                 f"the supernet for {r['supernet_epochs']} (a quick-run shortcut); "
                 f"under-trained references lower the accuracy bar the pick must reach.")
    ci = m["deit_tiny"].get("test_ci") or [math.nan, math.nan]
    s.append(f"The test split is small: DeiT-Tiny's interval spans "
             f"{f((_num(ci[1]) - _num(ci[0])) * 100, '.1f')} points, so accuracy differences "
             f"below that are not resolved.")
    chk = r.get("energy_check", {})
    if chk:
        worst = max(_num(v.get("rel_diff")) for v in chk.values())
        agree = "exactly" if worst == 0 else f"to within {f(worst * 100, '.2g')}%"
        rt = r.get("runtime") or "ONNX Runtime"
        none8 = " (none for the int8 CNN)" if "resnet10t_int8" in m else ""
        s.append(f"Energy is modelled (Horowitz 45 nm), not measured, for every float model"
                 f"{none8}; the generic counter used for the timm models agrees "
                 f"with jointopt's own model on the max_config subnet {agree} (params, MACs, "
                 f"energy). The timm models are timed in fp32 on the same runtime as the "
                 f"configs ({rt}).")
    return " ".join(s)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (110 dpi, the size every figure of RESULTS.md uses) and close ``fig``."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def _fig_headline(recs: list[dict[str, Any]], path: Path) -> bool:
    if not recs:
        return False
    plt = _plt()
    names = [n for _, n, _ in RATIO_KEYS]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(recs)
    for i, r in enumerate(recs):
        vals = [max(_num(r["ratios"]["deit_tiny"][n]), 1e-3) for n in names]
        ax.bar([j + i * width for j in range(len(names))], vals, width,
               label=f"{r['dataset']} ({mode_of(r)})")
    ax.axhline(10, color="k", ls="--", lw=1, label="10x target")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    ax.set_ylabel("pick / DeiT-Tiny shape (x better)")
    ax.legend(fontsize=8)
    ax.set_title("Pick vs DeiT-Tiny-shaped ViT")
    save_figure(fig, path)
    return True
