"""Several `jointopt search` processes on one study in a real PostgreSQL storage."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import run_cli, write_tiny_study
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from jointopt.controllers.storage import WORKER_ATTR
from jointopt.evaluation import METRIC_KEYS

URL_VAR = "JOINTOPT_TEST_PG_URL"  # the storage URL (with its password) stays out of the YAML
WORKERS = 4
N_TRIALS = 12


def pg_study(trained: Path, tmp_path: Path, name: str, **search: object) -> Path:
    """The trained tiny study (same supernet) searching into the storage named by $URL_VAR."""
    data = yaml.safe_load(trained.read_text())
    data["output"] = str(trained.parent / "out")
    data["dataset"]["root"] = str(trained.parent / "images")
    data["search_space"] = str(trained.parent / "space.yaml")
    data["search"] = {"study_name": name, "storage": f"env:{URL_VAR}", "n_trials": N_TRIALS,
                      "sampler": {"name": "nsga2", "population_size": 4, "seed": 0},
                      "constraints": ["accuracy >= 0.2"], **search}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _dominates(a: list[float], b: list[float], signs: list[float]) -> bool:
    """a dominates b: no worse on every objective and better on one (signs: -1 maximise)."""
    a_min = [x * s for x, s in zip(a, signs, strict=True)]
    b_min = [x * s for x, s in zip(b, signs, strict=True)]
    return (all(x <= y for x, y in zip(a_min, b_min, strict=True))
            and any(x < y for x, y in zip(a_min, b_min, strict=True)))


def front_of(trials: list[FrozenTrial], directions: list[StudyDirection]) -> set[int]:
    """Numbers of the non-dominated feasible COMPLETE trials, from values and constraints only."""
    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
    pool = [t for t in trials if t.state == TrialState.COMPLETE
            and all(v <= 0 for v in t.constraints.values())
            and all(math.isfinite(v) for v in t.values)]
    return {t.number for t in pool
            if not any(_dominates(o.values, t.values, signs) for o in pool if o is not t)}


def _overlapping_workers(trials: list[FrozenTrial]) -> bool:
    """Two trials of different processes ran at the same time."""
    spans = [(t.system_attrs[WORKER_ATTR], t.datetime_start, t.datetime_complete or datetime.now())
             for t in trials if t.datetime_start is not None]
    return any(w1 != w2 and s1 < e2 and s2 < e1
               for i, (w1, s1, e1) in enumerate(spans) for (w2, s2, e2) in spans[i + 1:])


@pytest.mark.slow
def test_concurrent_workers_share_one_postgres_study(postgres, trained_tiny, tmp_path) -> None:
    name = f"concurrent-{uuid.uuid4().hex[:8]}"
    path = pg_study(trained_tiny, tmp_path, name)
    url = postgres.create_database(f"conc_{uuid.uuid4().hex[:8]}")  # no tables yet
    env = {**os.environ, URL_VAR: url}

    cmd = [sys.executable, "-m", "jointopt", "search", str(path), "--quiet"]
    # All workers start at once on a database without tables: schema creation, study creation
    # and the baseline must survive the race (test_workers_starting_together_... below).
    procs, logs = [], []

    def launch(i: int) -> None:
        out, err = tmp_path / f"worker{i}.out", tmp_path / f"worker{i}.err"
        logs.append((out, err))
        with open(out, "w") as fo, open(err, "w") as fe:
            procs.append(subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env))

    for i in range(WORKERS):
        launch(i)
    deadline = time.monotonic() + 300
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    report = "\n".join(f"worker {i} rc={p.returncode}\n{o.read_text()}{e.read_text()[-2000:]}"
                       for i, (p, (o, e)) in enumerate(zip(procs, logs, strict=True)))
    assert all(p.returncode == 0 for p in procs), report

    ostudy = optuna.load_study(study_name=name, storage=url)
    trials = ostudy.trials
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    summary = {s.name: len(v) for s, v in by_state.items() if v}

    # Nothing lost, nothing left behind, nothing numbered twice.
    assert not by_state[TrialState.RUNNING] and not by_state[TrialState.WAITING], summary
    assert not by_state[TrialState.FAIL], [t.system_attrs.get("fail_reason")
                                           for t in by_state[TrialState.FAIL]]
    complete = by_state[TrialState.COMPLETE]
    # Infeasible configs are COMPLETE trials (with a violated constraint), so COMPLETE alone
    # must reach n_trials. Workers check "complete + running >= n_trials" at start and after
    # each trial, but two that finish at the same moment can each start one more: a search
    # may overshoot by at most workers - 1.
    assert N_TRIALS <= len(complete) <= N_TRIALS + WORKERS - 1, summary
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))), numbers

    # The trials really were run by several processes at the same time.
    workers = {t.system_attrs.get(WORKER_ATTR) for t in complete}
    assert None not in workers and len(workers) >= 2, workers
    assert _overlapping_workers(complete)

    # Every finished trial carries what the objective stores.
    baseline = [t for t in complete if t.user_attrs.get("baseline")]
    assert len(baseline) == 1 and "invalid" not in baseline[0].user_attrs
    keys = ostudy.user_attrs.get("objectives")
    assert keys == ["accuracy", "latency_ms", "energy_mj"], ostudy.user_attrs
    for t in complete:
        a = t.user_attrs
        assert {"config", "config_key"} <= set(a), (t.number, a)
        # one constraint, stored as the list optuna-dashboard reads (keyed "0" by Optuna)
        assert set(t.constraints) == {"0"}, t.number
        missing = set(METRIC_KEYS) - set(a)
        assert not missing, (t.number, missing)
        assert t.values == [float(a[k]) for k in keys], t.number
        assert t.constraints["0"] == pytest.approx(0.2 - a["accuracy"])

    # The front jointopt reports is the one recomputed here from values and constraints.
    r = run_cli("pareto", str(path), "--json", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    reported = json.loads(r.stdout)
    got = {rec["number"] for rec in reported["front"]}
    mine = front_of(trials, ostudy.directions)
    assert mine, summary
    by_number = {t.number: t for t in trials}
    # jointopt lists a repeat (a config measured before, whose metrics it copies) only once, as
    # the trial that measured it; a repeat has the same values, so both are on the front or
    # neither is.
    repeats = {n for n in mine if "repeat_of" in by_number[n].user_attrs}
    assert got == mine - repeats, (sorted(got), sorted(mine), sorted(repeats))
    for n in repeats:
        original = by_number[n].user_attrs["repeat_of"]
        assert original in got and by_number[original].values == by_number[n].values
    for rec in reported["front"]:
        assert [rec["metrics"][k] for k in keys] == by_number[rec["number"]].values
        assert rec["feasible"] is True
    listed = [t for t in complete if "repeat_of" not in t.user_attrs]
    assert reported["trials"] == len(listed)


_OPEN_TOGETHER = """
import pathlib, sys, time
from jointopt import Study
from jointopt.controllers.storage import open_storage, open_study
study = Study.from_yaml(sys.argv[1])
ready = pathlib.Path(sys.argv[2])
(ready / sys.argv[3]).touch()
while len(list(ready.iterdir())) < int(sys.argv[4]):
    time.sleep(0.005)
open_study(study, open_storage(study))
"""


@pytest.mark.slow
def test_workers_starting_together_on_a_fresh_database(postgres, tmp_path) -> None:
    """Workers opening one new study in a new database at the same instant: no worker fails
    (CREATE TABLE races are retried; loaders wait for the creator's 'objectives'), and the
    baseline is queued exactly once."""
    db = f"fresh_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(db)
    path = write_tiny_study(tmp_path, search={"study_name": "together",
                                              "storage": f"env:{URL_VAR}"})
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, URL_VAR: url}
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_TOGETHER, str(path), str(ready),
                               str(i), str(n)], stderr=subprocess.PIPE, text=True, env=env)
             for i in range(n)]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=180)
        if p.returncode != 0:
            errors.append(err.strip().splitlines()[-1])
    assert not errors, errors
    ostudy = optuna.load_study(study_name="together", storage=url)
    assert [t.user_attrs.get("baseline") for t in ostudy.trials] == [True]
