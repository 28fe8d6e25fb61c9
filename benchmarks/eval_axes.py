"""Benchmark: does each axis pay, and what does one evaluation cost?

Measured on the quickstart study's trained supernet, with a fresh measurement cache:
- at the largest architecture: throughput at r = 0 vs the largest r, and at 32/32 vs 8/8;
- the smallest 8/8 config with r > 0 against the baseline (space.max_config);
- the wall time of evaluate() over random configs (calibration and latency included), then
  the same configs again (cached latency);
- for each of those configs, where a fresh evaluation's time goes (:func:`phase_times`), with
  the deployed model's loads for batch 1 and the throughput batch (OpenVINO compiles) one after
  the other and side by side (``jointopt.runtimes.load_batches``, what evaluate() does),
  interleaved, each the best of ``--load-repeats``, and an integer config's export built from
  a float export (``jointopt.qdq``) and by Brevitas.

Usage: .venv/bin/python benchmarks/eval_axes.py [--study studies/quickstart.yaml] [--n 12]
Appends one JSON record to benchmarks/results/eval_axes.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def phase_times(study, net, cfgs, repeats):  # type: ignore[no-untyped-def]
    """Where a fresh evaluation's time goes, per config, in evaluate()'s order: the subnet and
    its calibrated Brevitas copy (``build``), validation predictions (``predict``), the ONNX
    export, the two loads (batch 1 and the throughput batch), side by side as evaluate() does
    them and one after the other (interleaved, best of ``repeats``), and the timing itself;
    for integer configs also the integer export both ways (``export_int_qdq``: jointopt.qdq,
    what evaluate() does; ``export_int_brevitas``: Brevitas's QCDQ export, what it did before
    2026-12-02), in alternating order. Returns {phase: [seconds per config]}."""
    import torch

    from jointopt.cost.latency import MeasureCache, eval_threads, time_runner
    from jointopt.deploy import accuracy_model, export_onnx
    from jointopt.evaluation import build_deployable, config_plan
    from jointopt.runtimes import get_runtime, load_batches
    from jointopt.train import predict

    ev = study.evaluation
    threads = eval_threads(ev)
    s = net.shape
    example = torch.zeros(1, net.in_chans, s.img_size, s.img_size)
    images = study.data().split("val")[0]
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, net.in_chans, s.img_size, s.img_size)).astype(np.float32)
    xb = rng.standard_normal((ev.batch_size, *x1.shape[1:])).astype(np.float32)
    cache = MeasureCache(Path(tempfile.mkdtemp(prefix="jointopt-phases-")) / "m.db")
    out: dict[str, list[float]] = {k: [] for k in (
        "build", "predict", "export", "export_int_qdq", "export_int_brevitas",
        "loads_side_by_side", "loads_one_after_the_other", "timing")}
    for cfg in cfgs:
        plan = config_plan(study, cfg)
        rt = get_runtime(plan.runtime)
        t = time.perf_counter()
        fm, qm = build_deployable(study, cfg, net)
        out["build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        predict(accuracy_model(plan, fm, qm), images)
        out["predict"].append(time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            path = export_onnx(plan, fm, qm, example, Path(tmp) / "model.onnx")
            out["export"].append(time.perf_counter() - t)
            if qm is not None:  # an integer graph: also Brevitas's QCDQ export (before qdq)
                pair = {}
                ways = ["float", "brevitas"]
                for via in ways if len(out["export_int_qdq"]) % 2 else ways[::-1]:
                    t = time.perf_counter()
                    export_onnx(plan, fm, qm, example, Path(tmp) / f"{via}.onnx", via=via)
                    pair[via] = time.perf_counter() - t
                out["export_int_qdq"].append(pair["float"])
                out["export_int_brevitas"].append(pair["brevitas"])
            one, two = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                for b in (1, ev.batch_size):
                    rt.load(path, plan, threads=threads, batch=b)
                one.append(time.perf_counter() - t)
                t = time.perf_counter()
                runners = load_batches(rt, path, plan, threads=threads,
                                       batches=(1, ev.batch_size))
                two.append(time.perf_counter() - t)
            out["loads_one_after_the_other"].append(min(one))
            out["loads_side_by_side"].append(min(two))
            t = time.perf_counter()
            time_runner(lambda x, r=runners: r[len(x)](x), x1, xb, cache=cache,
                        threads=threads, runs=ev.latency_runs, warmup=ev.warmup_runs)
            out["timing"].append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", default=str(ROOT / "studies" / "quickstart.yaml"))
    ap.add_argument("--n", type=int, default=12, help="random configs for the timing")
    ap.add_argument("--load-repeats", type=int, default=3,
                    help="repeats of each config's loads (the best of them is kept)")
    args = ap.parse_args()
    os.environ["JOINTOPT_CACHE"] = tempfile.mkdtemp(prefix="jointopt-bench-")
    from jointopt import Study
    from jointopt.cost.latency import MeasureCache
    from jointopt.evaluation import evaluate

    study = Study.from_yaml(args.study)
    net = study.load_supernet()
    space = study.space
    cache = MeasureCache()
    base = space.max_config
    r_max = max(space.choices["tome_r"])

    def ev(cfg):  # type: ignore[no-untyped-def]
        return evaluate(study, cfg, supernet=net, cache=cache).to_dict()

    rows = {
        "baseline": ev(base),
        "largest_rmax": ev(dataclasses.replace(base, tome_r=r_max)),
        "largest_w8a8": ev(dataclasses.replace(base, w_bits=8, a_bits=8)),
        "smallest_w8a8_rmax": ev(dataclasses.replace(space.min_config, w_bits=8, a_bits=8)),
    }
    rng = np.random.default_rng(0)
    cfgs = [space.sample(rng) for _ in range(args.n)]
    first, again = [], []
    for cfg in cfgs:
        t = time.perf_counter()
        ev(cfg)
        first.append(time.perf_counter() - t)
    for cfg in cfgs:
        t = time.perf_counter()
        ev(cfg)
        again.append(time.perf_counter() - t)
    phases = phase_times(study, net, cfgs, args.load_repeats)
    seq, side = phases["loads_one_after_the_other"], phases["loads_side_by_side"]
    b = rows["baseline"]["throughput_ips"]
    record = {
        "bench": "eval_axes", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
                   f"{os.cpu_count()} cores",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": {k: {kk: v[kk] for kk in ("accuracy", "latency_ms", "throughput_ips",
                                          "latency_runtime", "macs", "energy_mj")}
                 for k, v in rows.items()},
        "ratios": {
            "rmax_vs_r0_throughput": rows["largest_rmax"]["throughput_ips"] / b,
            "w8a8_vs_fp32_throughput": rows["largest_w8a8"]["throughput_ips"] / b,
            "smallest_w8a8_rmax_vs_baseline_throughput":
                rows["smallest_w8a8_rmax"]["throughput_ips"] / b,
        },
        "eval_seconds_median": statistics.median(first),
        "eval_seconds_cached_median": statistics.median(again),
        "n_configs": args.n,
        "load_seconds_sequential_median": statistics.median(seq),
        "load_seconds_side_by_side_median": statistics.median(side),
        "load_speedup_median": statistics.median(x / y for x, y in zip(seq, side, strict=True)),
        "load_repeats": args.load_repeats,
        "phase_seconds_median": {k: statistics.median(v) for k, v in phases.items() if v},
        "export_int_speedup_median": statistics.median(
            b / q for b, q in zip(phases["export_int_brevitas"], phases["export_int_qdq"],
                                  strict=True)) if phases["export_int_qdq"] else None,
        "int_configs": sum(c.w_bits < 16 for c in cfgs),
    }
    out = ROOT / "benchmarks" / "results" / "eval_axes.jsonl"
    with out.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
