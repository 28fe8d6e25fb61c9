"""How far can any supernet's ranking agree with standalone training? Seed replicates.

Section 5 ranks the supernet's inherited accuracy against standalone training (Kendall's tau,
target 0.6). On DeepPCB every fidelity config trains standalone to 0.982-0.986 test accuracy, so
the question is whether the standalone ranking itself is repeatable. This script trains some of
``make bench-train``'s fidelity configs (``fid-<k>``, fp32) standalone again with another seed,
with the same data, recipe and epochs (``jointopt train-fixed --seed S``, into a folder of its
own so the seed-0 weights section 5 quantizes stay as they are), and records both seeds'
accuracies. Two standalone runs of the same configs are the best any supernet's ranking could
be compared with: their tau is the ceiling of what section 5 can measure on these configs.

    .venv/bin/python benchmarks/fidelity_seeds.py [STUDY] [--jobs fid-00,fid-08] [--seed 1]

One record per trained job goes to benchmarks/results/bench_fidelity_seeds.jsonl as soon as it
finishes (a killed run resumes: recorded jobs are skipped). The seed-0 accuracies are those
``make bench-train`` recorded (runs/bench-train/<study>/fid-*.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import RESULTS, ROOT, derive_yaml, git, log, machine, rel_path  # noqa: E402

OUT = RESULTS / "bench_fidelity_seeds.jsonl"
#: The six fastest fidelity jobs of studies/deeppcb.yaml on 2 cores (the bench-train table):
#: three architectures unmerged and three merged.
DEFAULT_JOBS = ("fid-00", "fid-01", "fid-02", "fid-08", "fid-09", "fid-10")


def seed0(study_path: Path, job: str) -> dict[str, Any]:
    """What make bench-train recorded for ``job`` (seed 0): its config and accuracies."""
    from bench_train import _job

    from jointopt.study import Study

    info = _job(Study.from_yaml(study_path), job)
    if info is None:
        raise SystemExit(f"{job}: not trained by make bench-train "
                         f"(python benchmarks/bench_train.py {rel_path(study_path)})")
    return {"config": info["config"], **json.loads(info["stdout"])}


def done(study: str, seed: int) -> set[str]:
    if not OUT.is_file():
        return set()
    return {r["job"] for r in map(json.loads, OUT.read_text().splitlines())
            if r["study"] == study and r["seed"] == seed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="?", type=Path, default=ROOT / "studies" / "deeppcb.yaml")
    ap.add_argument("--jobs", default=",".join(DEFAULT_JOBS))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.seed == 0:
        raise SystemExit("--seed=0: that is make bench-train's own run; give another seed")
    study_rel = rel_path(args.study.resolve())
    run_dir = ROOT / "runs" / "bench-fidelity-seeds" / args.study.stem / f"seed{args.seed}"
    derived = derive_yaml(args.study, run_dir / "study.yaml", {"output": str(run_dir / "out")})
    for job in [j.strip() for j in args.jobs.split(",") if j.strip()]:
        if job in done(study_rel, args.seed):
            log(f"{job}: seed {args.seed} already recorded")
            continue
        first = seed0(args.study, job)
        argv = ["train-fixed", str(derived), "--model", "subnet:" + json.dumps(first["config"]),
                "--seed", str(args.seed), "--json", "--quiet"]
        log(f"{job}: training seed {args.seed} ({first['epochs']} epochs)")
        t = time.perf_counter()
        r = subprocess.run([str(Path(sys.executable).parent / "jointopt"), *argv], cwd=ROOT,
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise SystemExit(f"{job}: jointopt {' '.join(argv[:2])} failed ({r.returncode}):\n"
                             f"{r.stderr[-2000:]}")
        out = json.loads(r.stdout)
        rec = {"bench": "fidelity_seeds", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "commit": git("rev-parse", "--short", "HEAD"),
               "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
               "machine": machine(), "study": study_rel, "job": job, "seed": args.seed,
               "config": first["config"], "epochs": out["epochs"],
               "seconds": time.perf_counter() - t,
               "command": f"jointopt {' '.join(argv[:1])} {rel_path(args.study)} --model "
                          f"subnet:<{job}> --seed {args.seed} (output {rel_path(run_dir)})",
               "replicate": {k: out[k] for k in ("val_accuracy", "test_accuracy",
                                                 "val_balanced_accuracy",
                                                 "test_balanced_accuracy")},
               "seed0": {k: first[k] for k in ("val_accuracy", "test_accuracy") if k in first}}
        with OUT.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        log(f"{job}: seed {args.seed} test {out['test_accuracy']:.4f} "
            f"(seed 0: {first.get('test_accuracy', float('nan')):.4f}, "
            f"{rec['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
