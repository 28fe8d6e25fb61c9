"""Precision and runtime benchmark: every precision timed for real, on both runtimes, in one run.

For the largest quickstart architecture and d4 e128 h2 m3, every precision (fp32, 16-bit float,
w8a8 and the weight-only ones) is exported as its deployed graph and timed at batch 1 and at
the throughput batch on OpenVINO and on ONNX Runtime, with the study's threads (both runtimes,
every precision: the same options). Ratios divide by the fastest fp32 measured on either
runtime. Then:

* threads: the largest architecture at fp32 and w8a8 with 1 and with all cores;
* token merging: the largest architecture at r = 0, 2, 4, 8 on the default runtime;
* agreement: the deployed graph of each precision against the accuracy model, on the trained
  quickstart supernet's validation and test splits (720 images).

Each cell is the median of ``--rounds`` rounds, the rounds interleaving every cell, so a slow
spell of the machine spreads over all of them. Appends one record to
benchmarks/results/precision.jsonl; benchmarks/make_results.py renders it.

    .venv/bin/python benchmarks/precision.py [--rounds 5] [--runs 30] [--archs largest]
        [--merges 0,8] [--skip-agreement]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

PRECISIONS = ("w32a32", "w16a16", "w8a8", "w8a16", "w4a16", "w8a32", "w4a32")
RUNTIMES = ("openvino", "onnxruntime")
ARCHS = {"largest": {"depth": 6, "embed_dim": 192, "num_heads": 4, "mlp_ratio": 4.0},
         "d4e128h2m3": {"depth": 4, "embed_dim": 128, "num_heads": 2, "mlp_ratio": 3.0}}
MERGES = (0, 2, 4, 8)


def _median_time(run: Any, x: np.ndarray, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Cell:
    """One (architecture, r, precision, runtime, threads) deployed graph, compiled for batch
    1 and the throughput batch."""

    def __init__(self, study: Any, net: Any, cfg: Any, runtime: str, threads: int,
                 folder: Path) -> None:
        import torch

        from jointopt.cost.size import size_costs
        from jointopt.deploy import export_onnx
        from jointopt.evaluation import build_deployable, config_plan
        from jointopt.runtimes import get_runtime

        rt = get_runtime(runtime)
        self.plan = config_plan(study, cfg, runtime)
        sub, q = build_deployable(study, cfg, net)
        s = net.shape
        path = export_onnx(self.plan, sub, q, torch.zeros(1, net.in_chans, s.img_size,
                                                          s.img_size), folder / "model.onnx")
        self.batch = study.evaluation.batch_size
        self.run1 = rt.load(path, self.plan, threads=threads, batch=1)
        self.runb = rt.load(path, self.plan, threads=threads, batch=self.batch)
        self.costs = size_costs(cfg, s, self.plan, in_chans=net.in_chans,
                                num_classes=net.num_classes)
        rng = np.random.default_rng(0)
        self.x1 = rng.standard_normal((1, net.in_chans, s.img_size, s.img_size)
                                      ).astype(np.float32)
        self.xb = rng.standard_normal((self.batch, net.in_chans, s.img_size, s.img_size)
                                      ).astype(np.float32)
        self.lat: list[float] = []
        self.thr: list[float] = []

    def measure(self, runs: int) -> None:
        self.lat.append(_median_time(self.run1, self.x1, runs, 5) * 1e3)
        self.thr.append(self.batch / _median_time(self.runb, self.xb, max(3, runs // 4), 2))

    def result(self) -> dict[str, Any]:
        return {"label": self.plan.label, "latency_ms": statistics.median(self.lat),
                "throughput_ips": statistics.median(self.thr),
                "latency_rounds": self.lat, "throughput_rounds": self.thr,
                "macs": self.costs["macs"], "bitops": self.costs["bitops"],
                "model_bytes": self.costs["model_bytes"]}


def _measure_all(cells: dict[str, Cell], rounds: int, runs: int) -> dict[str, Any]:
    for _ in range(rounds):
        for cell in cells.values():
            cell.measure(runs)
    return {k: c.result() for k, c in cells.items()}


def _agreement(study: Any, net: Any, tmp: Path) -> dict[str, Any]:
    """Deployed (default runtime) vs accuracy-model top-1 on val + test, per precision."""
    import torch

    from jointopt.export import deploy_member, runtime_predictions, torch_predictions

    data = study.data()
    images = torch.cat([data.val[0], data.test[0]])
    labels = torch.cat([data.val[1], data.test[1]]).numpy()
    out = {}
    base = study.space.max_config
    for name in PRECISIONS:
        from jointopt.precision import parse_precision

        w, a = parse_precision(name)
        for r in (0, 4):
            cfg = dataclasses.replace(base, w_bits=w, a_bits=a, tome_r=r)
            folder = tmp / f"agree-{name}-r{r}"
            folder.mkdir()
            member = deploy_member(study, cfg, net, folder)
            dep = runtime_predictions(study, member.plan, member.onnx, images)
            ref = torch_predictions(member.model, images)
            out[f"{name}-r{r}"] = {
                "label": member.plan.label, "images": len(images),
                "agreement": float((dep == ref).mean()),
                "reported_accuracy": float((ref == labels).mean()),
                "deployed_accuracy": float((dep == labels).mean()),
                "check_ok": member.check["ok"], "problems": member.check["problems"],
                "model_bytes_ratio": member.check["model_bytes_ratio"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default=str(HERE.parent / "studies" / "quickstart.yaml"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="0: the study's (all cores)")
    ap.add_argument("--archs", default=",".join(ARCHS),
                    help=f"comma-separated architectures of the table (default: {','.join(ARCHS)}"
                         "; the threads and merging rows use the largest)")
    ap.add_argument("--merges", default=",".join(map(str, MERGES)),
                    help="comma-separated merge counts r of the merging rows (default: "
                         f"{','.join(map(str, MERGES))})")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    if not archs or any(a not in ARCHS for a in archs):
        ap.error(f"--archs {args.archs!r}: expected some of {','.join(ARCHS)}")
    try:
        merges = [int(m) for m in args.merges.split(",") if m.strip()]
    except ValueError:
        merges = []
    if not merges or any(m < 0 for m in merges):
        ap.error(f"--merges {args.merges!r}: expected merge counts such as 0,8")
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch
    from bench.common import git, machine

    from jointopt import JointConfig, Study
    from jointopt.cost.latency import eval_threads
    from jointopt.precision import parse_precision
    from jointopt.runtimes import DEFAULT_RUNTIME, get_runtime

    study = Study.from_yaml(args.study)
    if args.threads:
        study = dataclasses.replace(study, evaluation=dataclasses.replace(
            study.evaluation, threads=args.threads))
    threads = eval_threads(study.evaluation)
    torch.set_num_threads(threads)
    trained = study.checkpoint.is_file()
    if trained:
        net = study.load_supernet()
    else:  # timings do not depend on the weights; agreement needs the trained supernet
        from jointopt.supernet import ViTSupernet

        net = ViTSupernet(study.space.supernet, in_chans=study.dataset.channels,
                          num_classes=len(study.data().classes), space=study.space).eval()
    t0 = time.time()
    record: dict[str, Any] = {
        "bench": "precision", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", "jointopt")),
        "machine": machine(), "threads": threads, "batch": study.evaluation.batch_size,
        "rounds": args.rounds, "runs": args.runs, "default_runtime": DEFAULT_RUNTIME,
        "versions": {r: get_runtime(r).version() for r in RUNTIMES},
        "caps": {r: dataclasses.asdict(get_runtime(r).caps()) for r in RUNTIMES},
        "command": "python benchmarks/precision.py " + " ".join(argv or sys.argv[1:]),
        "loadavg_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)

        def cells_for(phase: str, keys: list[tuple[str, str, str, int, int]]
                      ) -> dict[str, Cell]:
            out = {}
            for arch, prec, rt, r, th in keys:
                w, a = parse_precision(prec)
                cfg = JointConfig(**ARCHS[arch], tome_r=r, w_bits=w, a_bits=a)
                key = f"{arch}|r{r}|{prec}|{rt}|t{th}"
                folder = tmp / f"{phase}_{key.replace('|', '_')}"
                folder.mkdir()
                out[key] = Cell(study, net, cfg, rt, th, folder)
            return out

        print(f"threads: {threads}; building the precision cells", flush=True)
        table = _measure_all(cells_for("table", [(arch, p, rt, 0, threads) for arch in archs
                                        for p in PRECISIONS for rt in RUNTIMES]),
                             args.rounds, args.runs)
        record["precision"] = table
        for k, v in table.items():
            print(f"{k:40s} {v['label']:45s} {v['latency_ms']:7.3f} ms "
                  f"{v['throughput_ips']:8.0f}/s", flush=True)
        print("threads sweep", flush=True)
        sweep = sorted({1, threads})
        record["threads_sweep"] = _measure_all(cells_for("threads",
            [("largest", p, rt, 0, th) for p in ("w32a32", "w8a8") for rt in RUNTIMES
             for th in sweep]), args.rounds, args.runs)
        print("merging", flush=True)
        record["merging"] = _measure_all(cells_for("merging",
            [("largest", p, DEFAULT_RUNTIME, r, threads) for p in ("w32a32", "w16a16", "w8a8")
             for r in merges]), args.rounds, args.runs)
        if trained and not args.skip_agreement:
            print("agreement", flush=True)
            record["agreement"] = _agreement(study, net, tmp)
    record["seconds"] = time.time() - t0
    record["loadavg_end"] = list(os.getloadavg())
    args.results.mkdir(parents=True, exist_ok=True)
    with open(args.results / "precision.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    for k, v in {**record["merging"], **record.get("agreement", {})}.items():
        print(k, {x: y for x, y in v.items() if not isinstance(y, list)}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
