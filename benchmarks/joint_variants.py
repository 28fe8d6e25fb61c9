"""A sampler variant against a recorded section-2 run: same cells, seeds and budgets.

The variant's searches run in a folder of their own (``runs/variants/<run>-<name>``) that starts
from a copy of the recorded run's measurement cache, so every config the run measured keeps its
measured costs and the variant's hypervolume compares with the run's searches config for config
(configs the run never measured are measured now). The supernets are the cached ones of the
run's studies. Each front is also re-scored on the test split, as
benchmarks/bench/joint_test.py does for a recorded run.

    .venv/bin/python benchmarks/joint_variants.py --run-dir runs/bench-full/F1 --name warm \\
        --sampler '{"name": "axiswise", "warm_start": true}' [--axis arch]
        [--cells wm811k/latency,...]

One record per cell goes to benchmarks/results/bench_joint_variants.jsonl. A killed variant resumes
(its studies are in its folder's search.db).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import RESULTS, ROOT, Ctx, derive_yaml, load_yaml, log, rel_path  # noqa: E402


def run_variant(ctx: Ctx, cell: dict[str, Any], name: str, sampler: dict[str, Any],
                axis: str = "joint") -> dict[str, Any]:
    import optuna
    from bench.joint import (
        OBJECTIVE_SETS,
        PCB_VAL_PER_CLASS,
        _summary,
        baseline,
        dataset_yaml,
        records,
        space_yaml,
    )
    from bench.joint_test import AccuracyOnTest, _test_hv

    from jointopt.controllers import run_search
    from jointopt.pareto import Objective

    dataset, objset = cell["dataset"], cell["objectives"]
    objectives = [Objective(k, d) for k, d in OBJECTIVE_SETS[objset].items()]
    base = baseline(ctx, dataset)
    src = dataset_yaml(ctx, dataset)
    study0 = ctx.study(src)
    accuracy_of = AccuracyOnTest(study0, ctx.ensure_supernet(src))

    n, long_n, long_seeds = cell["trials"], cell.get("long_trials", 0), cell.get("long_seeds", 0)
    checkpoints = tuple(sorted({n, 60, long_n} - {0}))
    runs = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in cell["seeds"]:
        budget = long_n if long_n > n and seed < long_seeds else n
        budgets = [n, budget] if sampler["name"] == "staged" and budget > n else [budget]
        row: dict[str, Any] = {"seed": seed}
        for b in budgets:  # a staged selection splits its budget: one study per budget
            tag = f"{dataset}-{objset}-{name}-s{seed}" + (f"-b{b}" if len(budgets) > 1 else "")
            path = ctx.run_dir / "studies" / f"{tag}.yaml"
            if not path.is_file():
                ev = dict(load_yaml(src).get("evaluate") or {})
                if dataset == "deeppcb":
                    ev["val_per_class"] = PCB_VAL_PER_CLASS
                opts = {**sampler, "seed": seed}
                if sampler["name"] == "staged":
                    opts["n_trials"] = b
                derive_yaml(src, path, {
                    "search_space": str(space_yaml(ctx, dataset, axis)),
                    "output": str(study0.output), "evaluate": ev,
                    "search": {"study_name": tag, "storage": ctx.storage, "sampler": opts,
                               "objectives": OBJECTIVE_SETS[objset], "n_trials": b,
                               "backend": "optuna"}})
            study = ctx.study(path)
            run_search(study, backend="optuna", n_trials=b, progress=False)
            ctx.commands.append(f"jointopt search {rel_path(path)} --n-trials {b}")
            recs = records(study)
            cps = [c for c in checkpoints if c <= b and (len(budgets) == 1 or
                                                       (c == n) == (b == n))]
            s = _summary(recs, objectives, base, tuple(cps), b)
            for c in cps:
                row[f"hv_{c}"] = s.get(f"hv_{c}")
                row[f"seconds_{c}"] = s.get(f"seconds_{c}")
                row[f"test_hv_{c}"] = _test_hv(recs, c, objectives, base, accuracy_of)
        log(f"variant {name} {dataset}/{objset} seed {seed}: "
            + ", ".join(f"HV at {c} {row[f'hv_{c}']:.4f}" for c in checkpoints
                        if row.get(f"hv_{c}") is not None))
        runs.append(row)
    return {"name": name, "sampler": sampler, "axis": axis, "dataset": dataset,
            "objectives": objset,
            "source_run": cell["run_id"], "source_commit": cell["commit"],
            "trials": n, "long_trials": long_n, "long_seeds": long_seeds, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="a recorded section-2 run")
    ap.add_argument("--name", required=True, help="the variant's name (letters, digits, -)")
    ap.add_argument("--sampler", required=True,
                    help='the sampler block as JSON, e.g. \'{"name": "axiswise"}\'')
    ap.add_argument("--axis", default="joint", choices=("joint", "arch", "tokens", "bits"),
                    help="the space searched: joint, or one axis with the others pinned at "
                         "max_config's values (as section 2's single-axis searches)")
    ap.add_argument("--cells", default=None, help="DATASET/OBJECTIVES,... (default: all)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    def fail(msg: str) -> int:
        print(f"joint_variants: {msg}", file=sys.stderr)
        return 2

    if not re.fullmatch(r"[A-Za-z0-9-]+", args.name):
        return fail(f"--name {args.name!r}: use letters, digits and '-'")
    try:
        sampler = json.loads(args.sampler)
    except json.JSONDecodeError as e:
        return fail(f"--sampler: not JSON ({e})")
    if not isinstance(sampler, dict) or not isinstance(sampler.get("name"), str):
        return fail(f"--sampler {args.sampler!r}: needs a \"name\"")
    from jointopt.controllers.samplers import check_sampler_options, sampler_names

    if sampler["name"] not in sampler_names():
        return fail(f"--sampler name {sampler['name']!r}: known {sampler_names()}")
    try:
        check_sampler_options(sampler["name"], {k: v for k, v in sampler.items()
                                                if k not in ("name", "seed", "n_trials")})
    except TypeError as e:
        return fail(f"--sampler: {e}")
    from bench.joint_test import run_cells

    run_dir = args.run_dir.resolve()
    cells = run_cells(args.results, run_dir)
    if args.cells:
        want = [tuple(c.split("/", 1)) for c in args.cells.split(",")]
        if bad := [c for c in want if c not in cells]:
            return fail(f"--cells: {bad} not among the run's cells {sorted(cells)}")
        cells = {c: cells[c] for c in want}
    if not cells:
        return fail(f"{rel_path(args.results / 'bench_joint.jsonl')}: no section-2 record "
                    f"has run_dir {rel_path(run_dir)}")
    first = next(iter(cells.values()))
    out = ROOT / "runs" / "variants" / f"{first['run_id']}-{args.name}"
    if not (out / "cache").exists() and (run_dir / "cache").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copytree(run_dir / "cache", out / "cache")
    ctx = Ctx.create(first["mode"], first["budget"], out, results=args.results)
    for cell in cells.values():
        t = time.perf_counter()
        ctx.record("joint_variants", run_variant(ctx, cell, args.name, sampler, args.axis),
                   time.perf_counter() - t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
