"""Where one evaluation's time goes: calibration, ONNX export, runtime compile, timing, accuracy.

Evaluates a seeded sample of the configs a recorded benchmark run measured (its ``search.db``),
with a fresh measurement cache, and prints each stage's share of the wall time (stages nest:
``build_deployable`` includes ``calibrate``). For finding what to speed up; nothing is written.

    .venv/bin/python benchmarks/eval_stages.py runs/bench-full/F1 wm811k 40

Run it on a quiet machine: a timing taken while other processes load the cores is repeated.
"""

from __future__ import annotations

import argparse
import collections
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(totals: dict[str, float], owner: Any, name: str, label: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - t

    setattr(owner, name, wrapper)


def main() -> None:
    import numpy as np

    from jointopt import evaluation, quant, runtimes
    from jointopt.cost import latency
    from jointopt.cost.latency import MeasureCache
    from jointopt.space import JointConfig
    from jointopt.study import Study

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("dataset")
    ap.add_argument("n", type=int, nargs="?", default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    db = args.run_dir / "search.db"
    studies = sorted((args.run_dir / "studies").glob(f"{args.dataset}-*-joint-s0.yaml"))
    if not db.is_file() or not studies:
        raise SystemExit(f"{args.run_dir}: no search.db or {args.dataset} joint study")
    rows = sqlite3.connect(db).execute(
        "SELECT u.value_json FROM trial_user_attributes u JOIN trials t ON t.trial_id = "
        "u.trial_id JOIN studies s ON s.study_id = t.study_id WHERE u.key = 'config' AND "
        "s.study_name LIKE ?", (args.dataset + "-%",)).fetchall()
    configs = list(dict.fromkeys(v for (v,) in rows))
    pick = np.random.default_rng(args.seed).choice(len(configs), min(args.n, len(configs)),
                                                   replace=False)
    study = Study.from_yaml(studies[0])
    totals: dict[str, float] = collections.defaultdict(float)
    _timed(totals, quant, "calibrate", "calibrate")
    _timed(totals, evaluation, "predict", "predict (accuracy)")
    _timed(totals, evaluation, "build_deployable", "build_deployable")
    _timed(totals, latency, "export_deployed", "ONNX export")
    _timed(totals, runtimes.OpenVinoRuntime, "_compiled", "runtime compile")
    _timed(totals, latency, "time_runner", "timing")
    cache = MeasureCache(Path(tempfile.mkdtemp()) / "m.sqlite")
    evaluation.evaluate(study, study.space.max_config, cache=cache)  # load and warm up
    totals.clear()
    precisions: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()
    for i in pick:
        m = evaluation.evaluate(study, JointConfig.from_dict(json.loads(configs[i])),
                                cache=cache)
        precisions[m.extra["precision"]] += 1
    wall = time.perf_counter() - t0
    print(f"{args.dataset}: {len(pick)} configs of {args.run_dir} {dict(precisions)}; "
          f"{wall:.1f} s, {wall / len(pick):.2f} s per config")
    for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {k:20s} {v:7.1f} s {100 * v / wall:5.1f}%")


if __name__ == "__main__":
    main()
