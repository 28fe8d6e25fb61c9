"""Sections 2 and 3 on WM-811K: joint vs single-axis search, and the samplers.

Section 2 runs four searches at the same trial budget: architecture only (r = 0, fp32), tokens
only (largest architecture, fp32), bits only (largest architecture, r = 0; its grid of valid
(w, a) pairs is smaller than the budget, so it is evaluated exhaustively) and joint. Axes are
restricted by search-space YAML variants with single-value choices. Every hypervolume is
jointopt.pareto's normalised one against one baseline record (space.max_config, evaluated once
in the run's measurement cache, so every study's trial 0 shares its latency).

Section 3 runs the joint space with nsga2 (section 2's seed-0 study), tpe, gp and random and
records the hypervolume after each trial.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from bench.common import Ctx, _rel, derive_yaml, load_yaml, log, score_config
from bench.stats import mean_std

AXES = ("arch", "tokens", "bits", "joint")
SAMPLERS = ("nsga2", "tpe", "gp", "random")
ARCH = ("depth", "embed_dim", "num_heads", "mlp_ratio")


def space_yaml(ctx: Ctx, axis: str) -> Path:
    """The search-space YAML of one axis: the study's space with the other axes pinned."""
    base = ctx.study(ctx.wm_yaml).space_path
    path = ctx.run_dir / "spaces" / f"{axis}.yaml"
    if path.is_file():
        return path
    data = load_yaml(base)
    ch = data["choices"]
    top = {k: [max(ch[k])] for k in ARCH}
    if axis == "arch":
        ch.update(tome_r=[0], w_bits=[32], a_bits=[32])
    elif axis == "tokens":
        ch.update(top, w_bits=[32], a_bits=[32])
    elif axis == "bits":
        ch.update(top, tome_r=[0])
    elif axis != "joint":
        raise ValueError(axis)
    path.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    path.write_text(f"# {axis} axis of {base.name} (benchmarks/bench/axes.py)\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


def search_study(ctx: Ctx, axis: str, sampler: str, seed: int, n_trials: int) -> Any:
    """Run (or resume) one search of the run on WM-811K and return its Study."""
    import optuna

    from jointopt.controllers import run_search

    name = f"{axis}-{sampler}-s{seed}"
    path = ctx.run_dir / "studies" / f"{name}.yaml"
    if not path.is_file():
        base = ctx.study(ctx.wm_yaml)
        sampler_cfg: dict[str, Any] = {"name": sampler, "seed": seed}
        if sampler == "nsga2":
            sampler_cfg["population_size"] = 10
        derive_yaml(ctx.wm_yaml, path, {
            "search_space": str(space_yaml(ctx, axis)), "output": str(base.output),
            "search": {"study_name": name, "storage": ctx.storage, "sampler": sampler_cfg,
                       "n_trials": n_trials, "backend": "optuna"}})
    ctx.ensure_supernet(ctx.wm_yaml)
    study = ctx.study(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = time.perf_counter()
    run_search(study, backend="optuna", n_trials=n_trials, progress=False)
    ctx.commands.append(f"jointopt search {_rel(path)} --n-trials {n_trials}")
    log(f"search {name}: {n_trials} trials ready ({time.perf_counter() - t:.0f} s)")
    return study


def trial_seconds(study: Any, n_trials: int) -> float:
    """Wall time of the study's first ``n_trials`` trials (whichever section ran them)."""
    from jointopt.controllers.storage import open_storage, open_study

    ostudy = open_study(study, open_storage(study), create=False)
    trials = sorted(ostudy.get_trials(deepcopy=False), key=lambda t: t.number)[:n_trials]
    return sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
               if t.datetime_complete and t.datetime_start)


def all_records(study: Any, n_trials: int | None = None) -> list[dict[str, Any]]:
    """Every complete trial (repeats included, they carry the earlier metrics) in order."""
    from jointopt.controllers.objective import trial_record
    from jointopt.controllers.storage import open_storage, open_study

    ostudy = open_study(study, open_storage(study), create=False)
    recs = [r for t in ostudy.get_trials(deepcopy=False) if (r := trial_record(t))]
    recs.sort(key=lambda r: r["number"])
    return recs[:n_trials] if n_trials else recs


def baseline_record(ctx: Ctx) -> dict[str, Any]:
    """space.max_config evaluated once in the run's cache: the common HV reference."""
    study = ctx.study(ctx.wm_yaml)
    net = ctx.ensure_supernet(ctx.wm_yaml)
    m, _ = score_config(ctx, study, net, study.space.max_config, dataset="wm811k")
    return {"number": -1, "config": m["config"], "metrics": m, "feasible": True}


def _points(records: list[dict[str, Any]], front: list[dict[str, Any]]) -> list[list[Any]]:
    on = {id(r) for r in front}
    out = []
    for r in records:
        m = r["metrics"]
        if "accuracy" not in m:
            continue
        out.append([r["number"], m["accuracy"], m["latency_ms"], m["energy_mj"],
                    m["throughput_ips"], m["macs"], m["bitops"], m["latency_runtime"],
                    bool(r["feasible"]), id(r) in on])
    return out


POINT_FIELDS = ["number", "accuracy", "latency_ms", "energy_mj", "throughput_ips", "macs",
                "bitops", "latency_runtime", "feasible", "on_front"]


def bits_grid(ctx: Ctx) -> list[dict[str, Any]]:
    """Every valid (w, a) pair at the largest architecture, r = 0, evaluated directly."""
    from jointopt.errors import UserError
    from jointopt.space import SearchSpace

    study = ctx.study(ctx.wm_yaml)
    net = ctx.ensure_supernet(ctx.wm_yaml)
    space = SearchSpace.from_yaml(space_yaml(ctx, "bits"))
    recs = []
    for i, (w, a) in enumerate(itertools.product(space.choices["w_bits"],
                                                 space.choices["a_bits"])):
        cfg = space.max_config.__class__(**{**space.max_config.__dict__, "w_bits": w,
                                            "a_bits": a})
        try:
            space.validate(cfg)
        except UserError:
            continue
        m, _ = score_config(ctx, study, net, cfg, dataset="wm811k", test=False)
        recs.append({"number": i, "config": cfg.to_dict(), "metrics": m, "feasible": True})
    return recs


def run_axes(ctx: Ctx) -> dict[str, Any]:
    """Section 2."""
    from jointopt.pareto import hypervolume, pareto_front

    n, seeds = ctx.budget["trials"], list(range(ctx.budget["seeds"]))
    base = baseline_record(ctx)
    objectives = list(ctx.study(ctx.wm_yaml).search.objectives)
    out: dict[str, Any] = {"trials": n, "seeds": seeds, "point_fields": POINT_FIELDS,
                           "objectives": [o.key for o in objectives],
                           "baseline": {k: base["metrics"][k] for k in
                                        ("accuracy", "latency_ms", "energy_mj",
                                         "throughput_ips", "test_accuracy", "test_ci")},
                           "searches": {}}
    for axis in AXES:
        runs = []
        if axis == "bits":
            t = time.perf_counter()
            recs = bits_grid(ctx)
            front = pareto_front(recs, objectives)
            runs.append({"seed": None, "grid": True, "n_evaluated": len(recs),
                         "hv": hypervolume(recs, objectives, base), "front": len(front),
                         "seconds": time.perf_counter() - t, "points": _points(recs, front)})
            log(f"bits grid: {len(recs)} configs, HV {runs[-1]['hv']:.4f}")
        else:
            for seed in seeds:
                t = time.perf_counter()
                study = search_study(ctx, axis, "nsga2", seed, n)
                recs = all_records(study, n)
                uniq = _unique(recs)
                front = pareto_front(uniq, objectives)
                runs.append({"seed": seed, "grid": False, "n_evaluated": len(uniq),
                             "n_trials": len(recs), "hv": hypervolume(uniq, objectives, base),
                             "front": len(front), "seconds": time.perf_counter() - t,
                             "trial_seconds": trial_seconds(study, n),
                             "points": _points(uniq, front)})
                log(f"{axis} seed {seed}: HV {runs[-1]['hv']:.4f} "
                    f"({len(uniq)} distinct configs)")
        mean, std, k = mean_std([r["hv"] for r in runs])
        out["searches"][axis] = {"runs": runs, "hv_mean": mean, "hv_std": std, "hv_n": k}
    long_n, long_seeds = ctx.budget.get("long_trials", 0), ctx.budget.get("long_seeds", 0)
    if long_n > n and long_seeds > 0:
        out["long"] = run_long(ctx, objectives, base, long_n, list(range(long_seeds)))
    return out


def run_long(ctx: Ctx, objectives: list[Any], base: dict[str, Any], n: int,
             seeds: list[int]) -> dict[str, Any]:
    """Continue the arch and joint studies of ``seeds`` to ``n`` trials.

    The first ``trials`` trials are the section's own (same study, same sampler), so each
    history's prefix is the equal-budget comparison and the rest shows how each search goes
    on with more budget.
    """
    from jointopt.pareto import hypervolume_history

    out: dict[str, Any] = {"trials": n, "seeds": seeds, "axes": {}}
    for axis in ("arch", "joint"):
        hists, secs = [], []
        for seed in seeds:
            study = search_study(ctx, axis, "nsga2", seed, n)
            recs = all_records(study, n)
            hists.append(hypervolume_history(recs, objectives, base))
            secs.append(trial_seconds(study, n))
            log(f"{axis} seed {seed}, {n} trials: HV {hists[-1][-1]:.4f}")
        out["axes"][axis] = {"hv_histories": hists, "trial_seconds": secs}
    return out


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First occurrence of each config (a repeat of a config adds no new point)."""
    seen, out = set(), []
    for r in records:
        key = repr(sorted(r["config"].items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run_samplers(ctx: Ctx) -> dict[str, Any]:
    """Section 3."""
    from jointopt.pareto import hypervolume_history

    n = ctx.budget["sampler_trials"]
    base = baseline_record(ctx)
    objectives = list(ctx.study(ctx.wm_yaml).search.objectives)
    out: dict[str, Any] = {"trials": n, "samplers": {}}
    for sampler in SAMPLERS:
        t = time.perf_counter()
        study = search_study(ctx, "joint", sampler, 0, n)
        recs = all_records(study, n)
        hist = hypervolume_history(recs, objectives, base)
        # tpe and gp draw their first 10 trials at random; nsga2's first generation (10) too.
        startup = 0 if sampler == "random" else 10
        out["samplers"][sampler] = {
            "hv_history": hist, "final_hv": hist[-1] if hist else 0.0,
            "distinct_configs": len(_unique(recs)), "n_trials": len(recs),
            "startup_trials": startup, "seconds": time.perf_counter() - t,
            "trial_seconds": trial_seconds(study, n)}
        log(f"sampler {sampler}: final HV {out['samplers'][sampler]['final_hv']:.4f}")
    return out
