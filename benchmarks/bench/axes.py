"""Section 3 on WM-811K: the samplers on the joint space (latency objective set).

Runs the joint space with each sampler (section 2's seed-0 studies are reused where they
exist) and records the hypervolume after each distinct config, against section 2's baseline.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Ctx, log
from bench.joint import OBJECTIVE_SETS, SAMPLER_OPTIONS, baseline, records, search

SAMPLERS = ("axiswise", "nsga2", "tpe", "gp", "random")


def search_study(ctx: Ctx, sampler: str, seed: int, n_trials: int) -> Any:
    """The joint-space WM-811K study of one sampler (latency objective set)."""
    name = {"axiswise": "joint", "nsga2": "joint-nsga2"}.get(sampler)
    if name is not None:
        return search(ctx, "wm811k", "latency", name, seed, n_trials, n_trials)
    from bench import joint

    joint.SEARCHES.setdefault(f"joint-{sampler}", ("joint", sampler))
    return search(ctx, "wm811k", "latency", f"joint-{sampler}", seed, n_trials, n_trials)


def run_samplers(ctx: Ctx) -> dict[str, Any]:
    """Section 3."""
    from jointopt.pareto import Objective, hypervolume_history

    n = ctx.budget["sampler_trials"]
    base = baseline(ctx, "wm811k")
    objectives = [Objective(k, d) for k, d in OBJECTIVE_SETS["latency"].items()]
    out: dict[str, Any] = {"trials": n, "samplers": {}}
    for sampler in SAMPLERS:
        t = time.perf_counter()
        recs = records(search_study(ctx, sampler, 0, n))[:n]
        hist = hypervolume_history(recs, objectives, base)
        # tpe and gp draw their first 10 at random, nsga2's first generation is 10 random,
        # axiswise spreads its first 6 (plus the baseline)
        startup = {"random": 0, "axiswise": 7}.get(sampler, 10)
        out["samplers"][sampler] = {
            "hv_history": hist, "final_hv": hist[-1] if hist else 0.0,
            "distinct_configs": len(recs), "n_trials": len(recs), "startup_trials": startup,
            "seconds": time.perf_counter() - t,
            "trial_seconds": sum(r["seconds"] for r in recs),
            "options": SAMPLER_OPTIONS.get("joint", {}) if sampler == "axiswise" else {}}
        log(f"sampler {sampler}: final HV {out['samplers'][sampler]['final_hv']:.4f}")
    return out
