"""RESULTS.md sections and figures of the bench_* records (called by make_results.py).

Every table lists all raw records; the detail tables and figures of a section describe one
record: the latest full run without budget overrides if there is one, else the latest quick run
without overrides, else the latest record. Verdicts are :class:`bench.stats.Check` rows and
details are tables of numbers from the records; the only prose is fixed captions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import PICK_TOLERANCE, RATIO_KEYS, TARGET_KEYS, Check

REF_LABEL = {"deit_tiny": "DeiT-Tiny-shaped ViT", "resnet10t": "resnet10t (CNN)",
             "resnet10t_int8": "resnet10t int8 (CNN)",
             "supernet_max": "supernet max_config", "pick": "pick (joint search)"}
#: The pick rule of records that do not name theirs (before issue 13).
OLD_RULE = "test-vs-deit"


# ---- formatting --------------------------------------------------------------------------
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
    return (f"Described run: the {mode_of(r)} run {r.get('run_id')} of {r.get('date')} "
            f"(commit {r.get('commit')}{', uncommitted changes' if r.get('dirty') else ''}; "
            f"{r.get('machine')}; load average {f((r.get('loadavg') or [math.nan])[0], '.1f')}"
            f"; section took {f(r.get('seconds'), '.0f')} s).")


# ---- target checks ---------------------------------------------------------------------
def _stem(r: dict[str, Any]) -> str:
    """" (conv stem)" for a run whose supernet has one (records before the field: patch)."""
    return " (conv stem)" if r.get("supernet_stem") == "conv" else ""


def in_unit(x: Any, unit: str) -> str:
    """A value as a :class:`Check` of that unit shows it."""
    if unit == "x":
        return fx(x)
    return f"{f(_num(x) * 100, '+.1f')} pts" if unit == "pts" else f(x, unit)


def check_cells(c: Check) -> list[str]:
    """measured, threshold, verdict, short by."""
    shown = in_unit(c.value, c.unit) + (f" vs {in_unit(c.vs, c.unit)}"
                                        if math.isfinite(_num(c.vs)) else "")
    t = _num(c.target)
    thr = "" if not math.isfinite(t) else (">" if c.strict else ">=") + " " + (
        f"{t:g}x" if c.unit == "x" else f"{t * 100:+.0f} pts" if c.unit == "pts"
        else f(t, c.unit))
    short = _num(c.short_by)
    by = "" if math.isnan(short) else f"{short:.1f}x" if c.unit == "x" else \
        f"{f(short * 100, '.1f')} pts" if c.unit == "pts" else f(short, c.unit)
    return [shown, thr, c.verdict, by]


def check_table(checks: Sequence[Check], *, summary: bool = False) -> list[str]:
    """Rows of target checks; the summary's also name the dataset and the run."""
    if summary:
        return ["| claim | dataset | measured | threshold | verdict | short by | run |",
                "|---|---|---|---|---|---|---|",
                *(f"| {c.claim} | {c.dataset} | " + " | ".join(check_cells(c)) + f" | {c.run} |"
                  for c in checks)]
    return ["| target | measured | threshold | verdict | short by |", "|---|---|---|---|---|",
            *(f"| {c.claim} | " + " | ".join(check_cells(c)) + " |" for c in checks)]


# ---- summary -----------------------------------------------------------------------------
#: Budget entries that shorten training on each dataset of the headline.
_TRAINING_KEYS = {"wm811k": ("wm_epochs",), "quickstart": ("syn_baseline_epochs",)}
#: Section 1's datasets, in the order RESULTS.md shows them.
HEADLINE_DATASETS = ("wm811k", "deeppcb", "quickstart")


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


def _cnn_checks(r: dict[str, Any], **where: str) -> list[Check]:
    """The record's targets against the CNN (issue 13), and the int8 CNN reported."""
    q8 = r["ratios"].get("resnet10t_int8") or {}
    return [*(Check(t["claim"], _num(t["value"]), t["target"], stated=t["met"],
                    unit="pts" if t["key"].startswith("accuracy") else "x", **where)
              for t in r["cnn_targets"]),
            Check("throughput vs resnet10t int8 (no target)", _num(q8.get("throughput")),
                  **where)]


def headline_checks(r: dict[str, Any]) -> list[Check]:
    """A headline record's claims: 10x against the DeiT-Tiny shape in each of
    :data:`TARGET_KEYS`, then the targets against the CNN, or (older records) the accuracy
    condition against DeiT-Tiny."""
    ds = r["dataset"]
    where = {"dataset": ds, "run": f"{mode_of(r)} {r['date']}{_evidence(r, ds)}"}
    rat, m = r["ratios"]["deit_tiny"], r["models"]
    out = [Check(f"{k} vs DeiT-Tiny shape", _num(rat.get(k)), 10.0, **where)
           for k in TARGET_KEYS]
    if r.get("cnn_targets"):
        return out + _cnn_checks(r, **where)
    deit = _num(m["deit_tiny"]["test_accuracy"])
    return out + [Check("accuracy kept (pick test acc vs DeiT-Tiny's - 1 pt)",
                        _num(m["pick"].get("test_accuracy")), deit - PICK_TOLERANCE,
                        unit=".3f", stated=r["pick"]["rule_met"], vs=deit, **where)]


def summary(all_recs: dict[str, list[dict[str, Any]]]) -> list[str]:
    checks = [c for ds in HEADLINE_DATASETS
              if (r := headline_record(all_recs.get("headline", []), ds)) is not None
              for c in headline_checks(r)]
    if not checks:
        return []
    return ["## Summary", "", *check_table(checks, summary=True), "",
            "Verdicts come from the runs described in the sections below. A quick run uses "
            "reduced budgets (under-trained supernet and references: see each section), so its "
            "verdicts only show that the pipeline runs; only a full run (`make bench`) is "
            "evidence for or against a claim.", ""]


# ---- section 1 ---------------------------------------------------------------------------
def model_table(r: dict[str, Any]) -> list[str]:
    """Section 1's table of the pick and the references of one headline record."""
    refs = [t for t in ("pick", "supernet_max", "deit_tiny", "resnet10t", "resnet10t_int8")
            if t in r["models"]]
    out = ["| model | val acc | test acc [95% CI] | test balanced acc [95% CI] | params | "
           "MACs | BitOPs | bytes | latency ms | img/s | energy mJ | runtime | epochs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for tag in refs:
        m = r["models"][tag]
        ep = m.get("epochs", r["supernet_epochs"] if tag != "pick" else "-")
        out.append(f"| {REF_LABEL[tag]} | {f(m.get('val_accuracy'))} | "
                   f"{acc_ci(m.get('test_accuracy'), m.get('test_ci'))} | "
                   f"{acc_ci(m.get('test_balanced_accuracy'), m.get('test_balanced_ci'))} | "
                   f"{int(m['params']):,} | {int(m['macs']):,} | {int(m['bitops']):,} | "
                   f"{int(m['model_bytes']):,} | {f(m['latency_ms'], '.3f')} | "
                   f"{f(m['throughput_ips'], '.0f')} | {f(m['energy_model_mj'], '.4f')} | "
                   f"{m.get('latency_runtime', '')}{_contended(m)} | {ep} |")
    return out


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
        out.append(f"| {r['date']} | {r['commit']} | {mode_of(r)} | {r['dataset']}{_stem(r)} | "
                   f"{r['supernet_epochs']} / {r['baseline_epochs']} | "
                   f"{r['pick'].get('rule_id', OLD_RULE)} | "
                   f"{f(m['pick']['test_accuracy'])} | {f(m['deit_tiny']['test_accuracy'])} | "
                   f"{f(m['resnet10t']['test_accuracy'])} | {fx(q['throughput'])} | "
                   f"{fx(q['params'])} | {fx(q['macs'])} | {fx(q['energy'])} | "
                   f"{fx(q['latency'])} | {fx(r['ratios']['resnet10t']['throughput'])} | "
                   f"{'yes' if r['pick']['rule_met'] else 'no'} |")
    out.append("")
    shown = [x for x in (headline_record(recs, ds) for ds in HEADLINE_DATASETS)
             if x is not None]
    for r in shown:
        out += [f"### {r['dataset']}", "", _which(r), "", *model_table(r)]
        if r.get("cnn_targets"):
            out += ["", f"Targets against the CNN a user would otherwise deploy (every model "
                    f"measured in this run on {r.get('runtime')} at batch "
                    f"{r.get('batch_size')}):", "", *check_table(_cnn_checks(r))]
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
                "| fact | value |", "|---|---|",
                *(f"| {FACTS[k][0]} | {_fact(v, FACTS[k][1])} |"
                  for k, v in headline_facts(r).items()), "",
                "Energy is modelled (Horowitz 45 nm), not measured (no figure for the int8 CNN); "
                "the timm models are timed in fp32 on the configs' runtime.", ""]
    fig = figdir / "fig_headline.png"
    if _fig_headline(shown, fig):
        out += [f"![ratios over the DeiT-Tiny-shaped ViT]({fig.name})", ""]
    return out


def _contended(m: dict[str, Any]) -> str:
    share = m.get("latency_contended")
    return f" (timed on busy cores: {f(_num(share) * 100, '.0f')}% foreign load)" if share else ""


#: Each entry of :func:`headline_facts`: its label and how its value is shown.
FACTS: dict[str, tuple[str, str]] = {
    "rule_met": ("pick rule's accuracy condition met", ""),
    "trial_by_val": ("trial that choosing on validation accuracy picks", ""),
    "reference_val_accuracy": ("resnet10t val acc (condition: a member >= this - 1 pt)", ".3f"),
    "front_size": ("Pareto members", ""),
    "best_front_val": ("best member's val acc", ".3f"),
    "front_short": ("best member short of the condition", "pts"),
    "test_images": ("test images", ""),
    "acc_diff_vs_resnet10t": ("pick - resnet10t test acc, paired [95% CI]", "ci"),
    "balanced_diff_vs_resnet10t": ("pick - resnet10t test balanced acc, paired [95% CI]",
                                   "ci"),
    "acc_diff_vs_deit": ("pick - DeiT-Tiny test acc, paired [95% CI]", "ci"),
    "deit_ci_width": ("DeiT-Tiny test 95% CI width (smaller differences are not resolved)",
                      "pts"),
    "budget_matched": ("references trained as many epochs as the supernet", ""),
    "energy_check": ("generic counter vs jointopt on max_config (params, MACs, energy): "
                     "largest relative difference", "%"),
    "int8_layers": ("resnet10t int8: compute layers on 8-bit inputs", ""),
    "int8_calibration_images": ("resnet10t int8: calibration images (training)", ""),
    "int8_agreement": ("resnet10t int8: test images agreeing with fp32", "%"),
    "int8_vs_fp32_throughput": ("resnet10t int8 / fp32 throughput", "x"),
}


def _fact(v: Any, how: str) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if how == "ci":
        return f"{f(_num(v[0]) * 100, '+.1f')} pts [{f(_num(v[1]) * 100, '+.1f')}, " \
               f"{f(_num(v[2]) * 100, '+.1f')}]"
    if isinstance(v, tuple):
        return " / ".join(str(x) for x in v)
    if how == "pts":
        return f"{f(_num(v) * 100, '.1f')} pts"
    if how == "%":
        return f"{f(_num(v) * 100, '.3g')}%"
    return fx(v) if how == "x" else f(v, how) if how else str(v)


def headline_facts(r: dict[str, Any]) -> dict[str, Any]:
    """What a headline record says beyond its tables, as numbers keyed as :data:`FACTS`;
    entries the record does not have are left out."""
    m, p = r["models"], r["pick"]
    old = p.get("rule_id", OLD_RULE) == OLD_RULE
    vals = [_num(x.get("val_accuracy")) for x in p.get("front") or []]
    best = max(vals, default=math.nan)
    ci = m["deit_tiny"].get("test_ci") or [math.nan, math.nan]
    i8, cnn = m.get("resnet10t_int8") or {}, m["resnet10t"]
    out: dict[str, Any] = {
        "rule_met": bool(p["rule_met"]),
        "trial_by_val": p.get("pick_by_val_trial") if old else None,
        "reference_val_accuracy": None if old else p.get("reference_val_accuracy"),
        "front_size": None if old else p.get("front_size"),
        "best_front_val": None if old else best,
        "front_short": None if old or p["rule_met"] else _num(p.get("threshold")) - best,
        "test_images": r.get("test_images"),
        "acc_diff_vs_resnet10t": None if old else tuple(r.get("acc_diff_vs_resnet10t")
                                                        or [math.nan] * 3),
        "balanced_diff_vs_resnet10t": tuple(r["balanced_diff_vs_resnet10t"])
        if r.get("balanced_diff_vs_resnet10t") else None,
        "acc_diff_vs_deit": tuple(r.get("acc_diff_vs_deit") or [math.nan] * 3),
        "deit_ci_width": _num(ci[1]) - _num(ci[0]),
        "budget_matched": bool(r["budget_matched"]),
        "energy_check": max((_num(v.get("rel_diff")) for v in
                             (r.get("energy_check") or {}).values()), default=None),
        "int8_layers": (i8["int8_layers"], i8.get("compute_layers")) if i8 else None,
        "int8_calibration_images": i8.get("calibration_images"),
        "int8_agreement": i8.get("test_agreement_with_fp32"),
        "int8_vs_fp32_throughput": _num(i8.get("throughput_ips")) / _num(
            cnn.get("throughput_ips")) if i8 else None,
    }
    return {k: v for k, v in out.items() if v is not None}


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
