"""Benchmark: how a study scales with workers, measured here and projected for a cluster.

Measured on this machine, against a throw-away PostgreSQL server (tests/helpers/postgres.py):
1. trials per minute on the quickstart study with 1 and with 2 concurrent workers (separate
   `jointopt search` processes on one PostgreSQL study, each with a fresh measurement cache),
   timed from the first trial's start to the last trial's end as stored in the study;
2. the storage's commit rate: trials written per second by 1, 2, 4 and 8 concurrent writers
   that do what a worker does per trial (ask, the repeat lookup over all trials, 30 user_attrs,
   the constraints, tell) with no evaluation, on a study already holding ``--prefill`` trials.

Projection for N workers: each adds 1 / t_trial trials per second until the storage saturates,
so rate(N) = min(N / t_trial, commit_rate). Linearity stops near N* = commit_rate * t_trial.

Usage: .venv/bin/python benchmarks/scaling.py [--trials 24] [--prefill 200]
Needs the quickstart supernet (make demo, or jointopt train studies/quickstart.yaml).
Appends one JSON record to benchmarks/results/scaling.jsonl.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _study_file(tmp: Path, url: str, name: str, n_trials: int, threads: int) -> Path:
    data = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    data["output"] = str((ROOT / "runs" / "quickstart").resolve())
    data["search_space"] = str(ROOT / "search_spaces" / "quickstart.yaml")
    data["search"].update(study_name=name, storage=url, n_trials=n_trials,
                          sampler={"name": "random", "seed": 0})
    data["search"].pop("seed_configs", None)
    # Each worker keeps to its share of the cores (2 workers x all cores thrash: see RESULTS).
    data.setdefault("evaluate", {})["threads"] = threads
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _workers_run(url: str, tmp: Path, workers: int, n_trials: int, threads: int) -> dict:
    import optuna
    from optuna.trial import TrialState

    name = f"scale-{workers}w-t{threads}"
    path = _study_file(tmp, url, name, n_trials, threads)
    procs = []
    for i in range(workers):
        env = {**os.environ, "JOINTOPT_CACHE": tempfile.mkdtemp(prefix=f"jointopt-scale{i}-")}
        procs.append(subprocess.Popen([sys.executable, "-m", "jointopt", "search", str(path),
                                       "--quiet"], env=env, stdout=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    trials = [t for t in optuna.load_study(study_name=name, storage=url).trials
              if t.state == TrialState.COMPLETE]
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    span = (end - start).total_seconds()
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    return {"workers": workers, "threads_per_worker": threads, "trials": len(trials),
            "seconds": span,
            "trials_per_min": 60 * len(trials) / span,
            "trial_seconds_median": statistics.median(durations),
            "repeats": sum("repeat_of" in t.user_attrs for t in trials)}


def _writer(url: str, name: str, n: int, q: mp.Queue) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url)
    t0 = time.perf_counter()
    for i in range(n):
        trial = study.ask()
        trial.suggest_categorical("depth", [2, 4, 6])
        study.get_trials(deepcopy=False)  # the repeat lookup every worker does per trial
        for k in range(30):
            trial.set_user_attr(f"m{k}", float(i * k))
        trial.set_constraint("accuracy", 0.0)
        study.tell(trial, [0.5, 1.0, 1.0])
    q.put(time.perf_counter() - t0)


def _commit_rate(url: str, writers: int, per_writer: int, prefill: int) -> dict:
    import optuna

    name = f"commit-{writers}w"
    study = optuna.create_study(study_name=name, storage=url,
                                directions=["maximize", "minimize", "minimize"])
    for i in range(prefill):
        t = study.ask()
        t.suggest_categorical("depth", [2, 4, 6])
        study.tell(t, [0.5, float(i), 1.0])
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, name, per_writer, q))
             for _ in range(writers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    slowest = max(q.get() for _ in procs)
    return {"writers": writers, "trials": writers * per_writer,
            "trials_per_s": writers * per_writer / slowest, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24, help="trials per quickstart run")
    ap.add_argument("--per-writer", type=int, default=40)
    ap.add_argument("--prefill", type=int, default=200, help="trials already in the study")
    ap.add_argument("--skip-oversubscribed", action="store_true",
                    help="skip the 2-workers-on-all-cores run (measured once: about 5x slower)")
    args = ap.parse_args()
    from helpers.postgres import provide_postgres

    from jointopt import Study

    Study.from_yaml(ROOT / "studies" / "quickstart.yaml").load_supernet()  # fails clearly
    server = provide_postgres()
    try:
        tmp = Path(tempfile.mkdtemp(prefix="jointopt-scaling-"))
        cores = len(os.sched_getaffinity(0))
        # 1 worker on every core; 2 workers on half each; and 2 workers that each take every
        # core (evaluate.threads: 0), the oversubscribed case.
        runs = [_workers_run(server.url, tmp, 1, args.trials, cores),
                _workers_run(server.url, tmp, 2, args.trials, max(1, cores // 2))]
        if not args.skip_oversubscribed:
            runs.append(_workers_run(server.url, tmp, 2, args.trials, 0))
        commits = [_commit_rate(server.url, w, args.per_writer, args.prefill)
                   for w in (1, 2, 4, 8)]
    finally:
        server.close()
    # Seconds per trial for one worker that has the cores a cluster node would give it.
    t_trial = 60.0 / runs[0]["trials_per_min"]
    peak = max(c["trials_per_s"] for c in commits)
    knee = peak * t_trial
    projection = [{"workers": n, "trials_per_min": 60 * min(n / t_trial, peak)}
                  for n in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    record = {
        "bench": "scaling", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
                   f"{os.cpu_count()} cores",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quickstart": runs, "commit_rate": commits, "prefill": args.prefill,
        "seconds_per_trial_one_worker": t_trial, "storage_peak_trials_per_s": peak,
        "linear_up_to_workers": knee, "projection": projection,
    }
    out = ROOT / "benchmarks" / "results" / "scaling.jsonl"
    with out.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
