"""RESULTS.md section 2 (joint vs staged and single-axis search): tables from bench_joint.jsonl.

Numbers only: every claim of the section is a :class:`bench.stats.Check` row whose verdict is
computed here from the records (stats.joint_vs_best_other).
"""

from __future__ import annotations

import json
import math
from typing import Any

from bench.render import check_table, f, mode_of
from bench.render_headroom import target_needs
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
        opts = ", ".join(f"{k} {v}" for k, v in s.get("sampler_options", {}).items())
        label = LABEL[name].replace(")", f", {opts})") if opts else LABEL[name]
        out.append(f"| {label} | " + " | ".join(cells) + f" | {cut} | {f(secs, '.0f')} |")
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
    out += [*ratio_rows(stats), "", *check_table(joint_checks(cells, stats)), "",
            *target_needs(cells, pairs, OTHERS)]
    return out


def ratio_rows(stats: dict[str, Any], what: str = "joint / best other") -> list[str]:
    """The per-cell table of seed-paired ratios (``stats``: :func:`joint_vs_best_other`)."""
    out = [f"| cell (dataset/objectives/budget) | {what}, per seed | mean |", "|---|---|---|"]
    for name, c in stats["cells"].items():
        out.append(f"| {name} | {', '.join(f(x, '.3f') for x in c['ratios'])} | "
                   f"{f(c['mean'], '.3f')} |")
    return out


def pooled_checks(stats: dict[str, Any]) -> list[Check]:
    """The pooled ratio, its bootstrap lower bound and the smallest cell mean."""
    return [Check(f"pooled seed-paired ratio ({stats['n_pairs']} pairs)", stats["pooled_mean"],
                  1.05, unit=".3f"),
            Check("bootstrap 95% lower bound of the pooled ratio", stats["pooled_lower"], 1.0,
                  unit=".3f", strict=True),
            Check("smallest cell mean ratio", stats["min_cell_mean"], 1.0, unit=".3f")]


def joint_checks(cells: list[dict[str, Any]], stats: dict[str, Any]) -> list[Check]:
    """Section 2's targets: :func:`pooled_checks`, and on WM-811K cells run to 120 trials,
    joint at 60 against the best other search at 120."""
    out = pooled_checks(stats)
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


def joint_test(joint_recs: list[dict[str, Any]], recs: list[dict[str, Any]]) -> list[str]:
    """Beside section 2's hypervolume: the same fronts with their test-split accuracy
    (benchmarks/bench/joint_test.py), for the cells section 2 shows."""
    cells = _latest_run(joint_recs)
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in recs:
        latest[(r["source_run"], r["dataset"], r["objectives"])] = r
    shown = [(c, latest.get((c["run_id"], c["dataset"], c["objectives"]))) for c in cells]
    shown = [(c, t) for c, t in shown if t is not None]
    if not shown:
        return []
    out = ["### Beside the hypervolume: the same fronts on the test split", "",
           "Each search keeps its front by validation accuracy, and a search that measures "
           "many near-identical configs keeps the luckiest of them (WM-811K validation is 134 "
           "images). Here every front of the tables above, at each budget, is re-scored with "
           "its members' test-split accuracy, which no search saw; the costs, the baseline's "
           "cost ratios and the reference point are the hypervolume's. Reported beside the "
           "targets, not in their place: the verdicts above stand. Command: "
           "`.venv/bin/python benchmarks/bench/joint_test.py --run-dir RUN` (after section 2; "
           "not part of `make bench`).", ""]
    pairs = []
    for cell, t in shown:
        n, long_n = cell["trials"], cell.get("long_trials", 0)
        cols = [n] + ([60, long_n] if long_n > n else [])
        out += [f"{cell['dataset']}, {cell['objectives']} objectives (fronts of run "
                f"{cell['run_id']}, scored at commit {t['commit']}; {t['n_configs_scored']} "
                f"configs; max_config test accuracy {f(t['baseline_test_accuracy'], '.4f')}):",
                "", "| search | " + " | ".join(f"test HV at {c}" for c in cols) + " |",
                "|---|" + "---|" * len(cols)]
        for name in ORDER:
            s = t["searches"].get(name)
            if s is None:
                continue
            row = []
            for c in cols:
                m, sd, k = mean_std([_test_at(run, c, n) for run in s["runs"]])
                row.append(f"{f(m, '.4f')} ± {f(sd, '.4f')} ({k})" if k else "n/a")
            out.append(f"| {LABEL[name]} | " + " | ".join(row) + " |")
        out.append("")
        for budget in sorted({n, long_n} - {0}):
            hv = {name: {run["seed"]: _test_at(run, budget, n) for run in s["runs"]
                         if _test_at(run, budget, n) == _test_at(run, budget, n)}
                  for name, s in t["searches"].items()}
            pairs.append({"name": f"{cell['dataset']}/{cell['objectives']}/{budget}",
                          "hv": hv})
    stats = joint_vs_best_other(pairs, others=OTHERS)
    out += [*ratio_rows(stats, "test HV, joint / best other"), "",
            f"On the test split: pooled ratio {f(stats['pooled_mean'], '.3f')} over "
            f"{stats['n_pairs']} pairs, bootstrap 95% lower bound "
            f"{f(stats['pooled_lower'], '.3f')}, smallest cell mean "
            f"{f(stats['min_cell_mean'], '.3f')}."]
    for cell, t in shown:
        if cell["dataset"] != "wm811k" or cell.get("long_trials", 0) < 120:
            continue
        j60 = [_test_at(run, 60, cell["trials"]) for run in t["searches"]["joint"]["runs"]
               if run["seed"] < cell["long_seeds"]]
        best = max(((mean_std([_test_at(run, 120, cell["trials"]) for run in
                               t["searches"][o]["runs"]])[0], o)
                    for o in OTHERS if o in t["searches"]), default=(math.nan, ""))
        out.append(f"{cell['objectives']}: joint's test HV at 60 "
                   f"{f(mean_std(j60)[0], '.4f')}, best other at 120 {f(best[0], '.4f')} "
                   f"({LABEL.get(best[1], best[1])}).")
    return out + [""]


def _test_at(run: dict[str, Any], n: int, short: int) -> float:
    if f"test_hv_{n}" in run:
        return run[f"test_hv_{n}"]
    # an exhausted grid has one front, keyed by the short budget: it stands at every budget
    return run[f"test_hv_{short}"] if run.get("exhausted") else math.nan


def variants(var_recs: list[dict[str, Any]], joint_recs: list[dict[str, Any]],
             test_recs: list[dict[str, Any]]) -> list[str]:
    """Sampler variants run against a recorded section-2 run (benchmarks/joint_variants.py):
    each variant's mean hypervolume beside the run's own joint and best other search, over the
    same seeds, and the same on the test split (bench_joint_test.jsonl)."""
    source = {(r["run_id"], r["dataset"], r["objectives"]): r for r in joint_recs}
    tests = {(r["source_run"], r["dataset"], r["objectives"]): r for r in test_recs}
    latest: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for v in var_recs:
        latest[(v["name"], v["source_run"], v["dataset"], v["objectives"])] = v
    rows = []
    for (name, run_id, ds, obj), v in latest.items():
        src = source.get((run_id, ds, obj))
        if src is None:
            continue
        t = tests.get((run_id, ds, obj))
        for b in sorted({v["trials"], 60, v.get("long_trials", 0)} - {0}):
            runs = [r for r in v["runs"] if r.get(f"hv_{b}") is not None]
            seeds = {r["seed"] for r in runs}
            if not runs:
                continue

            def seeded(recs: dict[str, Any] | None, search: str) -> list[dict[str, Any]]:
                runs_ = (recs or {}).get("searches", {}).get(search, {}).get("runs", [])
                return [r for r in runs_ if r["seed"] in seeds]  # noqa: B023 (used at once)

            best_other = []
            for sd in sorted(seeds):
                vals = [_hv_at(r, b) for o in OTHERS for r in src["searches"].get(o, {})
                        .get("runs", []) if r["seed"] == sd or r.get("exhausted")]
                best_other.append(_best(vals))
            jt = mean_std([_test_at(r, b, v["trials"]) for r in seeded(t, "joint")])[0] \
                if t else math.nan
            jv = mean_std([_hv_at(r, b) for r in seeded(src, "joint")])[0]
            rows.append(
                f"| {name} (`{json.dumps(v['sampler'], sort_keys=True)}`"
                f"{'' if v.get('axis', 'joint') == 'joint' else ', ' + v['axis'] + ' axis'})"
                f" | {ds}/{obj} | {b} | "
                f"{len(runs)} | {f(mean_std([r[f'hv_{b}'] for r in runs])[0], '.4f')} | "
                f"{f(jv, '.4f')} | "
                f"{f(mean_std(best_other)[0], '.4f')} | "
                f"{f(mean_std([r.get(f'test_hv_{b}', math.nan) for r in runs])[0], '.4f')} | "
                f"{f(jt, '.4f')} |")
    if not rows:
        return []
    return ["### Sampler variants against a recorded run", "",
            "Each variant ran the cells of a recorded section-2 run with the same seeds and "
            "budgets, from that run's measurement cache (a config the run measured keeps its "
            "measured costs), so its hypervolume compares config for config with the run's "
            "searches over the same seeds (means; best other: per seed, the best of "
            "architecture only, tokens only, bits only and staged). Command: "
            "`.venv/bin/python benchmarks/joint_variants.py --run-dir RUN --name NAME "
            "--sampler JSON`.", "",
            "| variant (sampler) | cell | budget | seeds | HV, variant | HV, run's joint | "
            "HV, run's best other | test HV, variant | test HV, run's joint |",
            "|---|---|---|---|---|---|---|---|---|", *rows, "",
            *_variant_sets(list(latest.values()), source)]


def _stands_for(v: dict[str, Any]) -> str | None:
    """Which section-2 search a variant stands in for: ``staged`` for the staged sampler,
    ``joint``/``arch``/``tokens`` for axiswise on that space."""
    name, axis = v["sampler"]["name"], v.get("axis", "joint")
    if name == "staged":
        return "staged" if axis == "joint" else None
    return axis if name == "axiswise" and axis in ("joint", "arch", "tokens") else None


def _variant_sets(var: list[dict[str, Any]], source: dict[Any, dict[str, Any]]) -> list[str]:
    """Section 2's comparison again with every search that has a variant with the same
    options (the sampler block less its name) replaced by that variant: what the targets read
    if those options were every search's. A search without such a variant keeps the run's."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in var:
        opts = json.dumps({k: x for k, x in v["sampler"].items() if k != "name"},
                          sort_keys=True)
        if _stands_for(v):
            groups.setdefault((v["source_run"], opts), []).append(v)
    out = []
    for (run_id, opts), vs in groups.items():
        if not any(_stands_for(v) == "joint" for v in vs):
            continue
        pairs, checks, cells, moved = [], [], [], []
        swap = {(v["dataset"], v["objectives"], _stands_for(v)): v for v in vs}
        for key, src in source.items():
            if key[0] != run_id:
                continue
            hv_at: dict[str, dict[int, dict[int, float]]] = {}
            for search, s in src["searches"].items():
                v = swap.get((src["dataset"], src["objectives"], search))
                runs = v["runs"] if v else s["runs"]
                hv_at[search] = {b: {r["seed"]: (r.get(f"hv_{b}", math.nan) if v
                                                 else _hv_at(r, b)) for r in runs}
                                 for b in (src["trials"], 60, src.get("long_trials", 0))}
            swapped = sorted(k[2] for k in swap if k[:2] == (src["dataset"], src["objectives"]))
            cells.append(f"{src['dataset']}/{src['objectives']}: {', '.join(swapped)}")
            for search in swapped:  # what the variant changed, in mean HV at each budget
                for b in sorted({src["trials"], src.get("long_trials", 0)} - {0}):
                    was = mean_std([_hv_at(r, b) for r in src["searches"][search]["runs"]])[0]
                    now = mean_std(list(hv_at[search][b].values()))[0]
                    moved.append(f"{src['dataset']}/{src['objectives']} {LABEL[search]} at {b}: "
                                 f"{f(was, '.4f')} -> {f(now, '.4f')}")
            for b in sorted({src["trials"], src.get("long_trials", 0)} - {0}):
                hv = {k: {sd: x for sd, x in d[b].items() if x == x} for k, d in hv_at.items()}
                pairs.append({"name": f"{src['dataset']}/{src['objectives']}/{b}", "hv": hv})
            if src["dataset"] == "wm811k" and src.get("long_trials", 0) >= 120:
                j60 = [x for sd, x in hv_at["joint"][60].items() if sd < src["long_seeds"]
                       and x == x]
                best = max((mean_std([x for x in hv_at[o][120].values() if x == x])[0]
                            for o in OTHERS if o in hv_at), default=math.nan)
                checks.append(Check(f"{src['objectives']}: joint HV at 60 vs best other at "
                                    "120", mean_std(j60)[0], best, unit=".4f"))
        stats = joint_vs_best_other(pairs, others=OTHERS)
        out += [f"With `{opts}` for every search that has a variant with those options "
                f"(run {run_id}; replaced: {'; '.join(cells)}; the others as the run "
                "recorded them). Not a section-2 run at one commit: the verdicts of the "
                "section's targets stand as above. Mean HV, as recorded -> with the variant: "
                + "; ".join(moved) + ".", "",
                *ratio_rows(stats), "", *check_table([*pooled_checks(stats), *checks]), ""]
    return out
