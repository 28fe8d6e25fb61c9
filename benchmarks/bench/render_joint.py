"""RESULTS.md section 2 (joint vs staged and single-axis search): tables from bench_joint.jsonl.

Numbers only: every claim of the section is a :class:`bench.stats.Check` row whose verdict is
computed here from the records (stats.joint_vs_best_other).
"""

from __future__ import annotations

import math
from typing import Any

from bench.render import check_table, f, mode_of
from bench.stats import Check, joint_vs_best_other, mean_std

ORDER = ("joint", "joint-nsga2", "staged", "arch", "tokens", "bits")
OTHERS = ("arch", "tokens", "bits", "staged")
LABEL = {"joint": "joint (axiswise)", "joint-nsga2": "joint (NSGA-II)",
         "staged": "staged (paper)", "arch": "architecture only", "tokens": "tokens only",
         "bits": "bits only (grid)"}


def _latest_run(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells of the newest run (full runs first), then each cell that run lacks from the
    newest earlier run of the same mode that has it (each cell's heading names its run and
    commit); a cell recorded twice in one run (the run continued with more seeds) counts once,
    as its last record."""
    if not recs:
        return []
    full = [r for r in recs if r.get("mode") == "full"] or recs
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in full:
        newest[(r["dataset"], r["objectives"])] = r
    run_id = full[-1]["run_id"]
    cells = {k: r for k, r in newest.items() if r["run_id"] == run_id}
    cells.update({k: r for k, r in newest.items() if k not in cells})
    return list(cells.values())


def _hv_at(run: dict[str, Any], n: int) -> float:
    if f"hv_{n}" in run:
        return run[f"hv_{n}"]
    h = run.get("hv_history") or []
    # a search whose space ran out (the bits grid) stops early: its final value stands
    return h[-1] if h and len(h) < n and run.get("exhausted") else math.nan


def _best(values: list[float]) -> float:
    return max((x for x in values if x == x), default=math.nan)


def cell_tables(r: dict[str, Any]) -> list[str]:
    n, long_n = r["trials"], r.get("long_trials", 0)
    cols = [n] + ([60, long_n] if long_n > n else [])
    out = [f"### {r['dataset']}, {r['objectives']} objectives ({mode_of(r)} run {r['run_id']},"
           f" commit {r['commit']})", "",
           f"Baseline (max_config): accuracy {f(r['baseline']['accuracy'], '.4f')}, "
           f"{f(r['baseline']['latency_ms'], '.3f')} ms, "
           f"{f(r['baseline']['throughput_ips'], '.0f')} img/s, "
           f"{f(r['baseline']['energy_mj'], '.4f')} mJ ({r['baseline']['latency_runtime']}).", "",
           "| search | " + " | ".join(f"HV at {c}" for c in cols)
           + " | largest cut at kept accuracy | seconds for " + str(n) + " |",
           "|---|" + "---|" * (len(cols) + 2)]
    for name in ORDER:
        s = r["searches"].get(name)
        if s is None:
            continue
        cells = []
        for c in cols:
            m, sd, k = mean_std([_hv_at(run, c) for run in s["runs"]])
            cells.append(f"{f(m, '.4f')} ± {f(sd, '.4f')} ({k})" if k else "n/a")
        cuts: dict[str, list[float]] = {}
        for run in s["runs"]:
            for key, v in run.get("kept_accuracy_cut_short", run["kept_accuracy_cut"]).items():
                cuts.setdefault(key, []).append(v)
        cut = ", ".join(f"{k.split('_')[0]} {f(_best(v), '.1f')}x" for k, v in cuts.items())
        secs = mean_std([run.get(f"seconds_{n}", run["seconds"]) for run in s["runs"]])[0]
        out.append(f"| {LABEL[name]} | " + " | ".join(cells) + f" | {cut} | {f(secs, '.0f')} |")
    c = r.get("ceiling")
    if c:
        best = max((s["hv_mean"] for k, s in r["searches"].items() if k in OTHERS
                    and s.get("hv_mean") == s.get("hv_mean")), default=math.nan)
        out += ["", "| headroom | configs | HV | / best other search's mean HV |",
                "|---|---|---|---|",
                f"| union of every config any search of this cell measured | {c['n_configs']} | "
                f"{f(c['union_hv'], '.4f')} | {f(c['union_hv'] / best, '.3f')}x |",
                f"| ideal corner (best error and smallest cost ratios seen, "
                f"{', '.join(f(x, '.3f') for x in c['best_ratios'])}) | | "
                f"{f(c['corner_hv'], '.4f')} | {f(c['corner_hv'] / best, '.3f')}x |", "",
                f"No search that picks its {n} configs among the union can pass its HV; the "
                "corner is a single config with the best accuracy at the smallest costs seen."]
    return out + [""]


def joint(recs: list[dict[str, Any]]) -> list[str]:
    cells = _latest_run(recs)
    if not cells:
        return []
    out = ["## 2. Joint search vs the staged selection and single-axis searches", "",
           "Normalised hypervolume (jointopt.pareto: error and cost ratios to one max_config "
           "baseline per cell, reference point 1), mean ± std (seeds) at each budget of "
           "distinct configs; the largest cut of each cost among configs within 1 point of the "
           "baseline's validation accuracy (best seed); the search's own trial time. "
           "Command: `make bench` (section 2, benchmarks/bench/joint.py).", ""]
    for r in cells:
        out += cell_tables(r)
    pairs = []
    for r in cells:
        for budget in sorted({r["trials"], r.get("long_trials", 0)} - {0}):
            hv = {name: {run["seed"]: _hv_at(run, budget) for run in s["runs"]
                         if _hv_at(run, budget) == _hv_at(run, budget)}
                  for name, s in r["searches"].items()}
            pairs.append({"name": f"{r['dataset']}/{r['objectives']}/{budget}", "hv": hv})
    stats = joint_vs_best_other(pairs, others=OTHERS)
    out += ["| cell (dataset/objectives/budget) | joint / best other, per seed | mean |",
            "|---|---|---|"]
    for name, c in stats["cells"].items():
        out.append(f"| {name} | {', '.join(f(x, '.3f') for x in c['ratios'])} | "
                   f"{f(c['mean'], '.3f')} |")
    out += ["", *check_table(joint_checks(cells, stats)), ""]
    return out


def joint_checks(cells: list[dict[str, Any]], stats: dict[str, Any]) -> list[Check]:
    """Section 2's targets: the pooled ratio, its bootstrap lower bound and the smallest cell
    mean (``stats``: :func:`joint_vs_best_other`), and on WM-811K cells run to 120 trials,
    joint at 60 against the best other search at 120."""
    out = [Check(f"pooled seed-paired ratio ({stats['n_pairs']} pairs)", stats["pooled_mean"],
                 1.05, unit=".3f"),
           Check("bootstrap 95% lower bound of the pooled ratio", stats["pooled_lower"], 1.0,
                 unit=".3f", strict=True),
           Check("smallest cell mean ratio", stats["min_cell_mean"], 1.0, unit=".3f")]
    for r in cells:
        if r["dataset"] != "wm811k" or r.get("long_trials", 0) < 120:
            continue
        j60 = [_hv_at(run, 60) for run in r["searches"]["joint"]["runs"]
               if run["seed"] < r["long_seeds"]]
        best120 = max((mean_std([_hv_at(run, 120) for run in r["searches"][o]["runs"]])[0]
                       for o in OTHERS if o in r["searches"]), default=math.nan)
        out.append(Check(f"{r['objectives']}: joint HV at 60 vs best other at 120",
                         mean_std(j60)[0], best120, unit=".4f"))
    return out
