"""Section 2, beside the hypervolume: each search's validation front scored on the test split.

Every search of section 2 chooses its front by validation accuracy, and the hypervolume of
section 2 is computed on the same validation accuracy. On WM-811K validation is 134 images, so
one image is 0.75 points, and a search that measures many near-identical configs keeps whichever
of them scored highest: the largest of many noisy scores is biased upwards. In run F1 the staged
selection's architecture stage (WM-811K, latency, seed 0, 120 configs) measured 45 depth-5
architectures, most of them one step from another; the front member it kept at 0.888
validation accuracy scores 0.813 on test, where joint's depth-2 member at 0.866 validation
scores 0.806 (each record of bench_joint_test.jsonl lists every front member it scored, with
both accuracies).

So beside the hypervolume, and not in place of it, each front at each budget is re-scored on the
test split, which no search saw: the same definition (error 1 - accuracy, the cell's baseline's
cost ratios, reference point 1), the same measured costs, only the accuracy is the test
split's; applied to every search alike. It says whether a front's trade-offs hold on new images.

Run over an existing section-2 run: ``.venv/bin/python benchmarks/bench/joint_test.py --run-dir
runs/bench-full/F1`` (reads the run's cell records from bench_joint.jsonl and its studies from
the run folder). It is not part of ``make bench``: on DeepPCB, scoring about 90 front members
on the 5,766 test images took 427 s and 437 s on 2 cores (run F1, bench_joint_test.jsonl),
and ``make bench`` is over its 2 h already.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, ROOT, Ctx, log, rel_path, test_correct  # noqa: E402


def _checkpoints(run: dict[str, Any]) -> list[int]:
    return sorted(int(k.split("_")[1]) for k in run if k.startswith("hv_") and k[3:].isdigit())


def _test_hv(recs: list[dict[str, Any]], n: int, objectives: list[Any], base: dict[str, Any],
             accuracy_of: Any) -> float:
    from jointopt.pareto import hypervolume, pareto_front

    front = pareto_front(recs[:n], objectives)
    scored = [{**r, "metrics": {**r["metrics"], "accuracy": accuracy_of(
        r["config"], r["metrics"].get("accuracy"))}} for r in front]
    return hypervolume(scored, objectives, base)


class AccuracyOnTest:
    """A config's test-split accuracy as deployed (``config`` dict -> float), each config
    scored once."""

    def __init__(self, study: Any, net: Any) -> None:
        self.study, self.net = study, net
        self.memo: dict[str, float] = {}
        self.val: dict[str, float | None] = {}

    def scored(self) -> list[dict[str, Any]]:
        """Every config scored so far, with its validation (as the search measured it) and
        test accuracy."""
        return [{"config": json.loads(k), "val_accuracy": self.val.get(k),
                 "test_accuracy": v} for k, v in self.memo.items()]

    def __call__(self, config: dict[str, Any], val_accuracy: float | None = None) -> float:
        from jointopt.export import deployed_model
        from jointopt.space import JointConfig

        key = json.dumps(config, sort_keys=True)
        if val_accuracy is not None:
            self.val[key] = val_accuracy
        if key not in self.memo:
            model = deployed_model(self.study, JointConfig.from_dict(config), self.net)
            self.memo[key] = float(test_correct(self.study, model).mean())
        return self.memo[key]


def run_cells(results: Path, run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The section-2 cell records (bench_joint.jsonl in ``results``) of the run in
    ``run_dir``, by (dataset, objectives); a cell recorded twice: its last."""
    path = results / "bench_joint.jsonl"
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        r = json.loads(line)
        if (ROOT / r["run_dir"]).resolve() == run_dir.resolve():
            cells[(r["dataset"], r["objectives"])] = r
    return cells


def cell_test(ctx: Ctx, cell: dict[str, Any]) -> dict[str, Any]:
    """Test-split hypervolume of every run of one section-2 cell record, at the budgets the
    record has (``hv_<n>`` keys), from the run's studies."""
    from bench.joint import OBJECTIVE_SETS, dataset_yaml, records, search
    from jointopt.pareto import Objective

    dataset, objset = cell["dataset"], cell["objectives"]
    objectives = [Objective(k, d) for k, d in OBJECTIVE_SETS[objset].items()]
    src = dataset_yaml(ctx, dataset)
    study = ctx.study(src)
    accuracy_of = AccuracyOnTest(study, ctx.ensure_supernet(src))

    base = {"metrics": {**cell["baseline"],
                        "accuracy": accuracy_of(study.space.max_config.to_dict())},
            "feasible": True}
    out: dict[str, Any] = {"dataset": dataset, "objectives": objset,
                           "source_run": cell["run_id"], "source_commit": cell["commit"],
                           "baseline_test_accuracy": base["metrics"]["accuracy"],
                           "searches": {}}
    n = cell["trials"]
    for name, s in cell["searches"].items():
        runs = []
        for run in s["runs"]:
            seed, size = run["seed"], run["n"]
            # The studies exist: search() only reopens them (every one ran to its budget).
            recs = records(search(ctx, dataset, objset, name, seed, size, size))
            row: dict[str, Any] = {"seed": seed, "exhausted": bool(run.get("exhausted"))}
            for c in _checkpoints(run):
                if name == "staged" and c == n and size > n:  # its own 40-config study
                    short = records(search(ctx, dataset, objset, name, seed, n, n))
                    row[f"test_hv_{c}"] = _test_hv(short, c, objectives, base, accuracy_of)
                else:
                    row[f"test_hv_{c}"] = _test_hv(recs, c, objectives, base, accuracy_of)
            if not _checkpoints(run):  # an exhausted grid: its whole front
                row[f"test_hv_{n}"] = _test_hv(recs, len(recs), objectives, base, accuracy_of)
            runs.append(row)
        out["searches"][name] = {"runs": runs}
    out["n_configs_scored"] = len(accuracy_of.memo)
    out["scored"] = accuracy_of.scored()
    log(f"section 2 test split {dataset}/{objset}: {len(accuracy_of.memo)} configs scored")
    return out


def run_test(ctx: Ctx, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One bench_joint_test.jsonl record per cell record."""
    done = []
    for cell in cells:
        t = time.perf_counter()
        done.append(ctx.record("joint_test", cell_test(ctx, cell), time.perf_counter() - t))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True,
                    help="a section-2 run folder (its cell records are in bench_joint.jsonl)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    run_dir = args.run_dir.resolve()
    cells = run_cells(args.results, run_dir)
    if not cells:
        print(f"{rel_path(args.results / 'bench_joint.jsonl')}: no section-2 record has "
              f"run_dir {rel_path(run_dir)}", file=sys.stderr)
        return 2
    first = next(iter(cells.values()))
    ctx = Ctx.create(first["mode"], first["budget"], run_dir, results=args.results)
    run_test(ctx, list(cells.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
