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
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS_DIR = HERE / "results"
BENCH_SECTIONS = ("headline", "joint", "joint_test", "joint_variants", "samplers",
                  "sharing", "fidelity", "fidelity_seeds", "costmodel")


def _records(name: str) -> list[dict]:
    path = RESULTS_DIR / f"{name}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _bench(lines: list[str], figdir: Path) -> None:
    """Sections 1-6 of benchmarks/run_bench.py (bench_*.jsonl)."""
    from bench import render, render_checks, render_joint, render_seeds

    recs = {name: _records(f"bench_{name}") for name in BENCH_SECTIONS}
    lines += render.summary(recs)
    lines += render.headline(recs["headline"], figdir)
    lines += render_joint.joint(recs["joint"])
    lines += render_joint.joint_test(recs["joint"], recs["joint_test"])
    lines += render_joint.variants(recs["joint_variants"], recs["joint"], recs["joint_test"])
    lines += render_checks.samplers(recs["samplers"], figdir)
    lines += render_checks.sharing(recs["sharing"])
    lines += render_checks.fidelity(recs["fidelity"], figdir)
    lines += render_seeds.fidelity_seeds(recs["fidelity_seeds"], recs["fidelity"])
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
    lines += ["", f"Latest run: `{last['command']}` on {last['machine']}.", ""]
    loads = [r for r in recs if "load_speedup_median" in r]
    if loads:
        lines += ["Loading the deployed model for batch 1 and the throughput batch (two OpenVINO "
                  "compiles), one after the other and side by side "
                  "(`jointopt.runtimes.load_batches`, what evaluate() does since 2026-12-02); "
                  "per config the best of a few repeats, the two ways interleaved:", "",
                  "| date | commit | configs | one after the other (s) | side by side (s) | "
                  "median ratio |", "|---|---|---|---|---|---|"]
        for r in loads:
            lines.append(f"| {r['date']} | {r['commit']} | {r['n_configs']} | "
                         f"{r['load_seconds_sequential_median']:.2f} | "
                         f"{r['load_seconds_side_by_side_median']:.2f} | "
                         f"{r['load_speedup_median']:.2f}x |")
        lines.append("")
    exported = [r for r in recs if r.get("export_int_speedup_median")]
    if exported:
        lines += ["An integer config's ONNX export, built from a float export and the "
                  "calibrated scales (`jointopt.qdq`, what evaluate() does since 2026-12-02) "
                  "and by Brevitas's QCDQ export (before), the two ways in alternating order "
                  "on the run's integer configs; the graphs are the same (tests/test_quant.py):",
                  "", "| date | commit | integer configs | Brevitas (s) | from float (s) | "
                  "median ratio |", "|---|---|---|---|---|---|"]
        for r in exported:
            ph = r["phase_seconds_median"]
            lines.append(f"| {r['date']} | {r['commit']} | {r['int_configs']} | "
                         f"{ph['export_int_brevitas']:.2f} | {ph['export_int_qdq']:.2f} | "
                         f"{r['export_int_speedup_median']:.2f}x |")
        lines.append("")
    phased = [r for r in recs if "phase_seconds_median" in r]
    if phased:
        names = list(phased[-1]["phase_seconds_median"])
        lines += ["Where a fresh evaluation's time goes (median seconds per config over the "
                  "run's random configs; `build` is the subnet and its calibrated Brevitas "
                  "copy, `predict` the validation predictions; benchmarks/eval_axes.py "
                  "`phase_times`):", "",
                  "| date | commit | configs (integer) | " + " | ".join(names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for r in phased:
            ph = r["phase_seconds_median"]
            lines.append(f"| {r['date']} | {r['commit']} | {r['n_configs']} "
                         f"({r['int_configs']}) | "
                         + " | ".join(f"{ph[k]:.2f}" if k in ph else "" for k in names) + " |")
        lines.append("")
    lines += [
              "| config | accuracy | latency (ms) | throughput (img/s) | runtime | MACs |",
              "|---|---|---|---|---|---|"]
    for k, v in last["rows"].items():
        lines.append(f"| {k} | {v['accuracy']:.4f} | {v['latency_ms']:.3f} | "
                     f"{v['throughput_ips']:.0f} | {v['latency_runtime']} | {v['macs']:,} |")
    lines.append("")


def _arches(r: dict[str, Any]) -> set[str]:
    return {k.split("|")[0] for k in r["precision"]}


def _fp32_best(r: dict[str, Any], arch: str = "largest") -> tuple[float, float]:
    """The fastest fp32 of either runtime at ``arch``: (batch-1 ms, batch img/s)."""
    fp32 = [v for k, v in r["precision"].items() if k.startswith(arch + "|")
            and "|w32a32|" in k]
    return min(v["latency_ms"] for v in fp32), max(v["throughput_ips"] for v in fp32)


def _precision_checks(r: dict[str, Any]) -> list[Any]:
    """Issue 11's targets on one precision record (largest architecture, default runtime)."""
    from bench.stats import Check

    default, th, batch = r["default_runtime"], r["threads"], r["batch"]
    best_lat, best_thr = _fp32_best(r)
    on = {p: r["precision"][f"largest|r0|{p}|{default}|t{th}"] for p in ("w8a8", "w16a16")}
    checks = [Check("w8a8 vs fp32, batch 1", best_lat / on["w8a8"]["latency_ms"], 1.5),
              Check(f"w8a8 vs fp32, batch {batch}", on["w8a8"]["throughput_ips"] / best_thr,
                    2.0),
              Check(f"16-bit vs fp32, batch {batch}",
                    on["w16a16"]["throughput_ips"] / best_thr, 1.3)]
    merge = r.get("merging", {})
    r0 = merge.get(f"largest|r0|w32a32|{default}|t{th}")
    r8 = merge.get(f"largest|r8|w32a32|{default}|t{th}")
    if r0 and r8:
        checks.append(Check(f"r = 8 vs r = 0 throughput (fp32, batch {batch})",
                            r8["throughput_ips"] / r0["throughput_ips"], 1.3))
    return checks


def _precision(lines: list[str]) -> None:
    """benchmarks/precision.py: every precision on both runtimes, merging, agreement."""
    from bench.render import check_table

    recs = _records("precision")
    if not recs:
        return
    # The verdicts come from the latest run of several interleaved rounds (make bench's 5):
    # make bench-quick's one round never replaces it. Every run is still listed below.
    r = max(enumerate(recs), key=lambda ir: (ir[1]["rounds"] > 1, ir[0]))[1]
    default = r["default_runtime"]
    t = r["precision"]
    lines += ["## Precision and runtime (quickstart architectures, 64x64, patch 8)", "",
              f"`{r['command']}` on {r['machine']}, {r['date']}, commit {r['commit']}; "
              f"{r['threads']} threads, batch 1 and batch {r['batch']}, median of "
              f"{r['rounds']} interleaved rounds; runtimes {r['versions']}. Ratios divide by "
              "the fastest fp32 of the two runtimes for that architecture (> 1 = faster).", ""]
    for arch in ("largest", "d4e128h2m3"):
        cells = {k: v for k, v in t.items() if k.startswith(arch + "|")}
        if not any("|w32a32|" in k for k in cells):
            continue
        best_lat, best_thr = _fp32_best(r, arch)
        lines += [f"**{arch}**", "",
                  "| precision | runtime | ran as | b1 ms | b1 vs fp32 | b{0} img/s | "
                  "b{0} vs fp32 | model bytes |".format(r["batch"]),
                  "|---|---|---|---|---|---|---|---|"]
        for k, v in cells.items():
            _, _, prec, rt, _ = k.split("|")
            lines.append(f"| {prec} | {rt} | {v['label']} | {v['latency_ms']:.3f} | "
                         f"{best_lat / v['latency_ms']:.2f}x | {v['throughput_ips']:.0f} | "
                         f"{v['throughput_ips'] / best_thr:.2f}x | {v['model_bytes']:,} |")
        lines.append("")
        if arch == "largest":
            lines += [f"Targets on the default runtime ({default}, largest architecture):", "",
                      *check_table(_precision_checks(r)), ""]
    history = [(x, _precision_checks(x)) for x in recs if "largest" in _arches(x)]
    if len(history) > 1:
        names = [c.claim for c in history[-1][1]]
        lines += ["The same targets in every recorded run of this section. The host's speed "
                  "varies between runs (fp32 throughput, first column), and the ratios move "
                  "with it: a verdict above holds for its run only (the latest of several "
                  "rounds; make bench-quick times one).", "",
                  f"| run | rounds | fp32 b{r['batch']} img/s | " + " | ".join(names) + " |",
                  "|---|---|---|" + "---|" * len(names)]
        for x, checks in history:
            by = {c.claim: c for c in checks}
            cells = [f"{by[n].value:.2f}x" if n in by else "" for n in names]
            lines.append(f"| {x['date']} ({x['commit']}) | {x['rounds']} | "
                         f"{_fp32_best(x)[1]:.0f} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    if r.get("threads_sweep"):
        lines += ["Threads (largest architecture):", "",
                  "| precision | runtime | threads | b1 ms | b{} img/s |".format(r["batch"]),
                  "|---|---|---|---|---|"]
        for k, v in r["threads_sweep"].items():
            _, _, prec, rt, th = k.split("|")
            lines.append(f"| {prec} | {rt} | {th[1:]} | {v['latency_ms']:.3f} | "
                         f"{v['throughput_ips']:.0f} |")
        lines.append("")
    if r.get("merging"):
        lines += [f"Token merging on {default} (largest architecture; r tokens merged in "
                  "each of the 6 blocks):", "",
                  "| precision | r | b1 ms | b1 vs r=0 | b{0} img/s | b{0} vs r=0 |".format(
                      r["batch"]), "|---|---|---|---|---|---|"]
        base = {}
        for k, v in r["merging"].items():
            _, rr, prec, _, _ = k.split("|")
            base.setdefault(prec, v)
            b = base[prec]
            lines.append(f"| {prec} | {rr[1:]} | {v['latency_ms']:.3f} | "
                         f"{b['latency_ms'] / v['latency_ms']:.2f}x | "
                         f"{v['throughput_ips']:.0f} | "
                         f"{v['throughput_ips'] / b['throughput_ips']:.2f}x |")
        lines.append("")
    if r.get("agreement"):
        lines += ["Deployed graph vs the accuracy model (trained quickstart supernet, largest "
                  "architecture, validation + test images):", "",
                  "| config | ran as | images | top-1 agreement | reported acc | deployed acc | "
                  "plan check | model_bytes / deployed |", "|---|---|---|---|---|---|---|---|"]
        for k, v in r["agreement"].items():
            lines.append(f"| {k} | {v['label']} | {v['images']} | {v['agreement']:.4f} | "
                         f"{v['reported_accuracy']:.4f} | {v['deployed_accuracy']:.4f} | "
                         f"{'ok' if v['check_ok'] else '; '.join(v['problems'])} | "
                         f"{v['model_bytes_ratio']:.3f} |")
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


def _bench_train(lines: list[str]) -> None:
    """benchmarks/bench_train.py (`make bench-train`): the latest record of each study."""
    recs = _records("bench_train")
    if not recs:
        return
    lines += ["## Benchmark training (`make bench-train`)", ""]
    for r in {r["study"]: r for r in recs}.values():
        done = {k: v for k, v in r["jobs"].items() if v}
        lines += [f"### {r['study']}", "",
                  f"Recorded by `{r['command']}` ({r['date']}, commit {r['commit']}). "
                  f"{len(done)} of {len(r['jobs'])} jobs finished.", "",
                  "| job | seconds | trained on |", "|---|---|---|"]
        lines += [f"| {k} | {v['seconds']:.0f} | {v.get('on', 'unknown')} |" if v
                  else f"| {k} | not finished | |" for k, v in r["jobs"].items()]
        lines.append("")


def _teacher(lines: list[str]) -> None:
    """benchmarks/teacher.py: CNN teacher (soft, hard) and conv stem against the base recipe;
    the latest record of each study."""
    recs = _records("teacher")
    if not recs:
        return
    lines += ["## Closing the ViT-CNN gap: CNN teacher, conv stem, augmentation, schedule "
              "(real data)", ""]
    for study in dict.fromkeys(r["study"] for r in recs):
        runs = [r for r in recs if r["study"] == study]
        # The latest run, and before it each earlier run with an arm that no later run
        # repeats (e.g. arms measured on the patch stem before the study took the conv stem).
        shown = [runs[-1]]
        for i in range(len(runs) - 2, -1, -1):
            later = set().union(*(set(r["arms"]) for r in runs[i + 1:]))
            if set(runs[i]["arms"]) - later:
                shown.append(runs[i])
        for k, r in enumerate(shown):
            _teacher_study(lines, r, latest=k == 0)
    lines += ["base: the study's recipe (sandwich rule, in-place distillation); soft / hard: "
              "every sandwich subnet also learns from the teacher's soft or hard targets; "
              "conv: convolutional stem instead of patchify; aug: random resized crops (80-100% "
              "of the area) with mixup or cutmix on every batch; long: twice the epochs. "
              "Commands are in the raw records "
              "(benchmarks/results/teacher.jsonl).", ""]


def _teacher_study(lines: list[str], r: dict, latest: bool = True) -> None:
    t = r["teacher"]
    prog = r.get("progress", {})
    lines += [f"### {r['study']}" + ("" if latest else f" (earlier run, {r['date']})"), "",
              f"{'Latest' if latest else 'Earlier'} run: "
              f"`python benchmarks/teacher.py {r['study']}` ({r['date']}, commit "
              f"{r['commit']}, {r['machine']}). The teacher {t['model']} ({t['params']:,} "
              f"parameters, {t['epochs']} epochs, same recipe) scores {t['val_accuracy']:.4f} "
              f"val and {t['test_accuracy']:.4f} test.", "",
              *([r["note"], ""] if r.get("note") else []),
              "| arm | epochs | subnet | val acc | test acc | test balanced | params | MACs |",
              "|---|---|---|---|---|---|---|---|"]
    for arm, rows in r["arms"].items():
        p = prog.get(arm)
        ep = f"{p['epochs_done']}/{p['epochs_planned']}" if p else "all"
        for name, v in rows.items():
            lines.append(f"| {arm} | {ep} | {name} | {v['val_accuracy']:.4f} | "
                         f"{v['test_accuracy']:.4f} | {v['test_balanced_accuracy']:.4f} | "
                         f"{v['params']:,} | {v['macs']:,} |")
    lines.append("")
    short = {a: p for a, p in prog.items() if p["epochs_done"] < p["epochs_planned"]}
    base = {h["epoch"]: h for h in prog.get("base", {}).get("val_history", [])}
    if short and base:
        lines += ["Arms stopped before their last epoch did not finish the learning-rate "
                  "schedule, so their test accuracy is not comparable with a finished arm's. "
                  "At equal epochs, from the validation accuracies logged during training:", "",
                  "| arm | epoch | val largest (arm) | val largest (base) | "
                  "val smallest (arm) | val smallest (base) |", "|---|---|---|---|---|---|"]
        for arm, p in short.items():
            h = p["val_history"][-1] if p["val_history"] else None
            b = base.get(h["epoch"]) if h else None
            if h and b:
                lines.append(f"| {arm} | {int(h['epoch'])} | {h['val_largest']:.4f} | "
                             f"{b['val_largest']:.4f} | {h['val_smallest']:.4f} | "
                             f"{b['val_smallest']:.4f} |")
        lines.append("")
    best = []
    for sub in ("largest", "smallest"):
        got = [(v[sub]["test_accuracy"], arm) for arm, v in r["arms"].items() if sub in v]
        if got:
            acc, arm = max(got)
            best.append(f"{sub}, {arm} {acc:.4f} ({100 * (acc - t['test_accuracy']):+.1f} pts)")
    if best:
        lines += ["Best arm's test accuracy against the teacher's: " + "; ".join(best) + ".", ""]
    if "wm811k" in r["study"]:
        lines += ["The test split of WM-811K is 134 images (one image is 0.75 points; a 95% "
                  "interval spans about +-7 points at 0.8), so no difference between arms is "
                  "resolved.", ""]


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
    rate = {(q["workers"], q.get("threads_per_worker", 0)): q["trials_per_min"]
            for q in last["quickstart"]}
    one = next((v for (w, _), v in rate.items() if w == 1), None)
    two = next((v for (w, th), v in rate.items() if w == 2 and th), None)
    lines += ["", "| projection input (latest run) | value |", "|---|---|",
              f"| seconds per trial, one worker | {last['seconds_per_trial_one_worker']:.2f} |",
              f"| storage peak (trials/s) | {last['storage_peak_trials_per_s']:.0f} |",
              f"| linear up to (workers) | {last['linear_up_to_workers']:.0f} |",
              f"| measured 2-worker / 1-worker rate, one machine | "
              f"{f'{two / one:.2f}x' if one and two else 'n/a'} |", "",
              "Each worker (one machine like this) adds 1 / (seconds per trial) trials/s until "
              "the storage peak; beyond it throughput is flat. Caveats: PostgreSQL and the "
              "writers shared these 2 cores, so the peak is partly the clients' CPU; every "
              "worker reads all trials once per trial (the repeat lookup; samplers too), so the "
              "storage limit falls as a study grows; and workers on one machine share its cores "
              "and one latency lock (hence the 2-worker rate below 2x). Read the knee as an "
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
    _precision(lines)
    _bench(lines, args.out.parent)
    _training(lines)
    _bench_train(lines)
    _teacher(lines)
    _eval_axes(lines)
    _scaling(lines)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
