"""Section 6: do analytic costs rank configs like measured latency, and how noisy is a timing?

* Spearman's rho between measured batch-1 latency and MACs, and BitOPs, over every WM-811K
  config the run evaluated (all searches of the run's storage and the directly evaluated
  ones); random joint configs are added when the run evaluated fewer than the budget's
  minimum (e.g. when section 6 runs alone). Also per runtime, since one MAC costs very
  differently on the fp32, int8 and bf16 paths.
* The coefficient of variation of 10 repeated latency measurements (each the median of the
  study's latency_runs after warm-up) of the same exported model, outside the cache: for the
  largest config (fp32) and the smallest one of the space (at its own precision).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Ctx, log, score_config, threads_of


def _run_points(ctx: Ctx) -> dict[str, dict[str, Any]]:
    """config key -> {macs, bitops, latency_ms, runtime} for everything the run evaluated."""
    import optuna

    from jointopt.controllers.objective import trial_record
    from jointopt.space import JointConfig

    pts: dict[str, dict[str, Any]] = {}

    def add(cfg: dict[str, Any], m: dict[str, Any]) -> None:
        if not isinstance(m.get("latency_ms"), (int, float)):
            return
        key = JointConfig.from_dict(cfg).key()
        pts.setdefault(key, {"macs": m["macs"], "bitops": m["bitops"],
                             "latency_ms": m["latency_ms"],
                             "runtime": str(m["latency_runtime"]).split(" ")[0]})

    db = ctx.run_dir / "search.db"
    if db.is_file():
        for name in optuna.get_all_study_names(ctx.storage):
            s = optuna.load_study(study_name=name, storage=ctx.storage)
            for t in s.get_trials(deepcopy=False):
                r = trial_record(t)
                if r and r["valid"]:
                    add(r["config"], r["metrics"])
    ev = ctx.run_dir / "evaluated.jsonl"
    if ev.is_file():
        for line in ev.read_text().splitlines():
            r = json.loads(line)
            if r["dataset"] == "wm811k":
                add(r["config"], r)
    return pts


def _repeat_latency(ctx: Ctx, cfg: Any, repeats: int) -> dict[str, Any]:
    from jointopt.cost.latency import deployed_runner, measurement_lock, median_time
    from jointopt.cost.registry import EvalContext
    from jointopt.evaluation import build_deployable, config_plan

    study = ctx.study(ctx.wm_yaml)
    net = ctx.ensure_supernet(ctx.wm_yaml)
    ev = study.evaluation
    sub, q = build_deployable(study, cfg, net)
    plan = config_plan(study, cfg)
    ectx = EvalContext(cfg=cfg, shape=net.shape, in_chans=net.in_chans,
                       num_classes=net.num_classes, io_bits=ev.io_bits,
                       batch_size=ev.batch_size, float_model=sub, quant_model=q, settings=ev,
                       plan=plan)
    threads = threads_of(study)
    s = net.shape
    x1 = np.random.default_rng(0).standard_normal(
        (1, net.in_chans, s.img_size, s.img_size)).astype(np.float32)
    lats = []
    with tempfile.TemporaryDirectory() as tmp:
        run = deployed_runner(ectx, Path(tmp), (1,))
        for _ in range(repeats):
            with measurement_lock(ctx.cache, threads):  # the lock only; nothing is cached
                lat, _ = median_time(lambda: run(x1), ev.latency_runs, ev.warmup_runs)
            lats.append(lat * 1e3)
    mean = statistics.fmean(lats)
    return {"config": cfg.to_dict(), "runtime": plan.label, "latencies_ms": lats,
            "mean_ms": mean, "cv": statistics.stdev(lats) / mean if len(lats) > 1 else 0.0}


def run(ctx: Ctx) -> dict[str, Any]:
    from scipy.stats import spearmanr

    study = ctx.study(ctx.wm_yaml)
    pts = _run_points(ctx)
    need = ctx.budget["costmodel_min_configs"]
    added = 0
    if len(pts) < need:
        net = ctx.ensure_supernet(ctx.wm_yaml)
        rng = np.random.default_rng(6)
        log(f"section 6: the run evaluated {len(pts)} configs; adding random ones to {need}")
        tries = 0
        while len(pts) < need and tries < 10 * need:
            tries += 1
            cfg = study.space.sample(rng)
            if cfg.key() in pts:
                continue
            score_config(ctx, study, net, cfg, dataset="wm811k", test=False)
            added += 1
            pts = _run_points(ctx)
    lat = [p["latency_ms"] for p in pts.values()]
    res: dict[str, Any] = {"n_configs": len(pts), "added_random": added, "per_runtime": {}}
    for k in ("macs", "bitops"):
        rho, p = spearmanr(lat, [q[k] for q in pts.values()])
        res[f"rho_{k}"], res[f"p_{k}"] = float(rho), float(p)
    for rt in sorted({p["runtime"] for p in pts.values()}):
        sel = [p for p in pts.values() if p["runtime"] == rt]
        row: dict[str, Any] = {"n": len(sel)}
        for k in ("macs", "bitops"):
            if len(sel) >= 3:
                rho, p = spearmanr([q["latency_ms"] for q in sel], [q[k] for q in sel])
                row[f"rho_{k}"], row[f"p_{k}"] = float(rho), float(p)
        res["per_runtime"][rt] = row
    res["points"] = [[p["macs"], p["bitops"], p["latency_ms"], p["runtime"]]
                     for p in pts.values()]
    reps = ctx.budget["latency_repeats"]
    res["repeat"] = {name: _repeat_latency(ctx, cfg, reps) for name, cfg in
                     (("max_config", study.space.max_config),
                      ("min_config", study.space.min_config))}
    log(f"section 6: rho(lat, MACs) {res['rho_macs']:.3f}, rho(lat, BitOPs) "
        f"{res['rho_bitops']:.3f}, CV {res['repeat']['max_config']['cv']:.3f}")
    return res
