"""Regenerate benchmarks/RESULTS.md and its figures from every raw record under
benchmarks/results/.

Never edit RESULTS.md or the fig_*.png files by hand: run
`.venv/bin/python benchmarks/make_results.py` (`make bench` / `make bench-quick` do).
`--results DIR --out FILE` render another set of records elsewhere (smoke tests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS_DIR = HERE / "results"
BENCH_SECTIONS = ("headline", "joint", "samplers", "sharing", "fidelity", "costmodel")


def _records(name: str) -> list[dict]:
    path = RESULTS_DIR / f"{name}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _bench(lines: list[str], figdir: Path) -> None:
    """Sections 1-6 of benchmarks/run_bench.py (bench_*.jsonl)."""
    from bench import render, render_checks, render_joint

    recs = {name: _records(f"bench_{name}") for name in BENCH_SECTIONS}
    lines += render.summary(recs)
    lines += render.headline(recs["headline"], figdir)
    lines += render_joint.joint(recs["joint"])
    lines += render_checks.samplers(recs["samplers"], figdir)
    lines += render_checks.sharing(recs["sharing"])
    lines += render_checks.fidelity(recs["fidelity"], figdir)
    lines += render_checks.costmodel(recs["costmodel"], figdir)


def _eval_axes(lines: list[str]) -> None:
    recs = _records("eval_axes")
    if not recs:
        return
    lines += ["## Each axis pays, and the cost of one evaluation (quickstart)", "",
              "| date | commit | r_max vs r0 throughput | 8/8 vs 32/32 throughput | "
              "smallest 8/8 r>0 vs baseline | eval median (s) | cached median (s) |",
              "|---|---|---|---|---|---|---|"]
    for r in recs:
        q = r["ratios"]
        lines.append(f"| {r['date']} | {r['commit']} | {q['rmax_vs_r0_throughput']:.2f}x | "
                     f"{q['w8a8_vs_fp32_throughput']:.2f}x | "
                     f"{q['smallest_w8a8_rmax_vs_baseline_throughput']:.1f}x | "
                     f"{r['eval_seconds_median']:.2f} | {r['eval_seconds_cached_median']:.2f} |")
    last = recs[-1]
    lines += ["", f"Latest run: `{last['command']}` on {last['machine']}.", "",
              "| config | accuracy | latency (ms) | throughput (img/s) | runtime | MACs |",
              "|---|---|---|---|---|---|"]
    for k, v in last["rows"].items():
        lines.append(f"| {k} | {v['accuracy']:.4f} | {v['latency_ms']:.3f} | "
                     f"{v['throughput_ips']:.0f} | {v['latency_runtime']} | {v['macs']:,} |")
    lines.append("")


def _training(lines: list[str]) -> None:
    recs = _records("training")
    if not recs:
        return
    lines += ["## Supernet training and standalone references", "",
              "| date | commit | study | model | epochs | train s | val acc | test acc | params |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['date']} | {r['commit']} | {r['study']} | {r['model']} | "
                     f"{r['epochs']} | {r['train_seconds']:.0f} | {r['val_accuracy']:.4f} | "
                     f"{r['test_accuracy']:.4f} | {r['params']:,} |")
    lines += ["", "Commands are in each raw record (benchmarks/results/training.jsonl).", ""]


def _scaling(lines: list[str]) -> None:
    recs = _records("scaling")
    if not recs:
        return
    lines += ["## Scaling: workers on one study (quickstart, PostgreSQL storage)", "",
              "Measured: `jointopt search` processes on one PostgreSQL study, timed from the "
              "first trial's start to the last trial's end as stored.", "",
              "| date | commit | workers | threads each | trials | seconds | trials/min | "
              "median s/trial |", "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        for q in r["quickstart"]:
            th = q.get("threads_per_worker", 0) or "all cores"
            lines.append(f"| {r['date']} | {r['commit']} | {q['workers']} | {th} | "
                         f"{q['trials']} | {q['seconds']:.1f} | {q['trials_per_min']:.1f} | "
                         f"{q['trial_seconds_median']:.2f} |")
    last = recs[-1]
    lines += ["", f"Storage commit rate (latest run, {last['machine']}): writers doing a "
              f"worker's per-trial storage traffic with no evaluation, on a study of "
              f"{last['prefill']} trials.", "", "| writers | trials/s |", "|---|---|"]
    lines += [f"| {c['writers']} | {c['trials_per_s']:.1f} |" for c in last["commit_rate"]]
    t, peak, knee = (last["seconds_per_trial_one_worker"], last["storage_peak_trials_per_s"],
                     last["linear_up_to_workers"])
    rate = {(q["workers"], q.get("threads_per_worker", 0)): q["trials_per_min"]
            for q in last["quickstart"]}
    one = next((v for (w, _), v in rate.items() if w == 1), None)
    two = next((v for (w, th), v in rate.items() if w == 2 and th), None)
    pair = (f"the 2-worker row measured here is {two / one:.2f}x, not 2x, because the two "
            "workers share one machine's 2 cores and one latency lock" if one and two else
            "one machine's workers share its cores and one latency lock")
    lines += ["", f"Projection: each worker (one machine like this) adds 1/{t:.2f} s trials; "
              f"the storage peaks at {peak:.0f} trials/s, so throughput grows linearly up to "
              f"about {knee:.0f} workers and is flat beyond. Caveats: PostgreSQL and the "
              "writers shared these 2 cores, so the peak is partly the clients' CPU; every "
              "worker reads all trials once per trial (the repeat lookup; samplers too), so "
              f"the storage limit falls as a study grows; and {pair}. Read the knee as an "
              "upper bound.", "",
              "| workers | projected trials/min |", "|---|---|"]
    lines += [f"| {p['workers']} | {p['trials_per_min']:.0f} |" for p in last["projection"]]
    lines += ["", f"Command: `{last['command']}`.", ""]


def main(argv: list[str] | None = None) -> None:
    global RESULTS_DIR
    ap = argparse.ArgumentParser(description="Regenerate RESULTS.md from the raw records.")
    ap.add_argument("--results", type=Path, default=RESULTS_DIR)
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args(argv)
    RESULTS_DIR = args.results
    lines = ["# Benchmark results", "",
             "Generated by `benchmarks/make_results.py` from `benchmarks/results/*.jsonl`; "
             "do not edit by hand (figures included). Machines are shared and noisy: timings "
             "are medians, ratios come from one run, and `quick` runs use reduced budgets "
             "(a `*` marks budgets overridden by hand). `make bench` / `make bench-quick` "
             "append the raw records (machine, date, commit, commands) and regenerate this "
             "file.", ""]
    _bench(lines, args.out.parent)
    _training(lines)
    _eval_axes(lines)
    _scaling(lines)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
