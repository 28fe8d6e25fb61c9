"""Run the benchmark suite (what `make bench` and `make bench-quick` call).

Sections (each appends its raw record to benchmarks/results/bench_<name>.jsonl as soon as it
finishes, so a crash later keeps the earlier ones):

  1 headline   a Pareto member (picked on validation against resnet10t) vs DeiT-Tiny-shaped
               ViT, resnet10t (fp32 and int8) and max_config (WM-811K, synthetic; DeepPCB
               in a full run, its models from `make bench-train`): ratios of
               params, MACs, BitOPs, bytes, latency, throughput, energy
  2 joint      joint search vs the staged selection and every single-axis search, per
               dataset x objective set (WM-811K latency and throughput, DeepPCB throughput)
  3 samplers   hypervolume vs trials for nsga2, tpe, gp, random (WM-811K, joint space)
  4 sharing    inherited-weight evaluation vs training a subnet from scratch
  5 fidelity   inherited vs standalone accuracy ranking (Kendall's tau): WM-811K, and
               DeepPCB in a full run from `make bench-train`'s standalone models
  6 costmodel  Spearman's rho of latency vs MACs / BitOPs, latency repeatability

Usage:
  .venv/bin/python benchmarks/run_bench.py --quick|--full [--sections 1,2,...]
      [--set trials=8 --set seeds=1 ...] [--run-dir DIR] [--results DIR]
      [--datasets wm811k,quickstart,deeppcb] [--cells wm811k/latency,...]

--quick uses a reduced WM-811K study (10 epochs, output runs/bench-quick/wm811k-e10), the
WM-811K latency cell only in section 2, and the quickstart supernet of `make demo`; --full
uses studies/wm811k.yaml as is (runs/wm811k).
Budgets (BUDGETS in bench/common.py) can be overridden with --set for a smoke test. The run's
folder (measurement cache, search storage, derived YAMLs) is runs/bench-<mode>/<run id>/;
--run-dir continues an earlier run. Afterwards run benchmarks/make_results.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

SECTIONS = {1: "headline", 2: "joint", 3: "samplers", 4: "sharing", 5: "fidelity",
            6: "costmodel"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_const", const="quick", dest="mode")
    mode.add_argument("--full", action="store_const", const="full", dest="mode")
    ap.add_argument("--sections", default="1,2,3,4,5,6",
                    help="comma-separated section numbers (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT",
                    help="override one budget entry, e.g. trials=8")
    ap.add_argument("--run-dir", type=Path, default=None,
                    help="continue a run in this folder (cache, searches)")
    ap.add_argument("--datasets", default=None,
                    help="sections 1 and 5's datasets, comma-separated (default: wm811k, "
                         "quickstart, and deeppcb in a full run)")
    ap.add_argument("--cells", default=None,
                    help="section 2's cells, comma-separated DATASET/OBJECTIVES (default: the "
                         "budget's wm_cells WM-811K cells and DeepPCB's; e.g. "
                         "wm811k/latency,wm811k/throughput,deeppcb/throughput)")
    ap.add_argument("--results", type=Path, default=None,
                    help="write raw records here instead of benchmarks/results (smoke tests)")
    args = ap.parse_args(argv)

    from bench.common import BUDGETS, Ctx, log

    budget = dict(BUDGETS[args.mode])
    overrides: dict[str, int] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in budget or not value.lstrip("-").isdigit():
            ap.error(f"--set {item!r}: expected KEY=INT with KEY in {sorted(budget)}")
        budget[key] = overrides[key] = int(value)
    try:
        sections = [int(s) for s in args.sections.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--sections {args.sections!r}: expected numbers such as 1,2,6")
    if bad := [s for s in sections if s not in SECTIONS]:
        ap.error(f"--sections: unknown section(s) {bad}; known: {sorted(SECTIONS)}")
    wanted = args.datasets or ("wm811k,quickstart,deeppcb" if args.mode == "full"
                               else "wm811k,quickstart")
    datasets = tuple(d.strip() for d in wanted.split(",") if d.strip())
    if not datasets or any(d not in ("wm811k", "quickstart", "deeppcb") for d in datasets):
        ap.error(f"--datasets {wanted!r}: expected some of wm811k,quickstart,deeppcb")

    from bench.joint import CELLS

    if args.cells is None:  # the budget's first wm_cells WM-811K cells, and the others
        wm = [c for c in CELLS if c[0] == "wm811k"][:budget["wm_cells"]]
        cells = tuple(c for c in CELLS if c[0] != "wm811k" or c in wm)
    else:
        cells = tuple(tuple(c.strip().split("/", 1)) for c in args.cells.split(",")
                      if c.strip())
    if not cells or any(c not in CELLS for c in cells):
        ap.error(f"--cells {args.cells!r}: expected some of "
                 f"{','.join('/'.join(c) for c in CELLS)}")

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    ctx = Ctx.create(args.mode, budget, args.run_dir, overrides=overrides,
                     results=args.results)
    log(f"{args.mode} run {ctx.header['run_id']} in {ctx.run_dir}; sections {sections}; "
        f"budget {budget}")
    t0 = time.perf_counter()
    failed = []
    for s in sections:
        name = SECTIONS[s]
        log(f"== section {s}: {name}")
        t = time.perf_counter()
        try:
            if s == 1:
                from bench import headline

                headline.run(ctx, datasets)  # one record per dataset, each as soon as it is done
                continue
            if s == 2:
                from bench.joint import run_joint

                run_joint(ctx, cells)  # one record per cell, each as soon as it is done
                continue
            if s == 5:  # one record per dataset (none for the synthetic set)
                from bench.joint import PCB_YAML
                from bench.sharing import run_fidelity, trained_fidelity

                for ds in datasets:
                    t = time.perf_counter()
                    data = run_fidelity(ctx) if ds == "wm811k" else \
                        trained_fidelity(ctx, PCB_YAML) if ds == "deeppcb" else None
                    if data is not None:
                        ctx.record(name, data, time.perf_counter() - t)
                continue
            if s == 3:
                from bench.axes import run_samplers as fn
            elif s == 4:
                from bench.sharing import run_sharing as fn
            else:
                from bench.costmodel import run as fn
            data = fn(ctx)
            ctx.record(name, data, time.perf_counter() - t)
        except Exception:  # noqa: BLE001  (keep going: later sections may still work)
            traceback.print_exc()
            failed.append(s)
            ctx.commands.clear()
            log(f"section {s} ({name}) FAILED after {time.perf_counter() - t:.0f} s")
    log(f"done in {time.perf_counter() - t0:.0f} s"
        + (f"; failed sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
