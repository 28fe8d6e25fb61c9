"""Cluster faults against a real PostgreSQL server and a real multi-node Ray cluster.

- the storage goes away mid-run: a short outage is ridden out, a long one stops the search with
  one line (exit 3), and every finished trial is still stored;
- a Ray worker node dies mid-trial: its trial is retried on another node and the study still
  reaches ``n_trials``; meanwhile ``jointopt dashboard`` on the same database lists the trials.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from helpers import RAY_HEAD, load_trials, variant
from optuna.trial import TrialState

from jointopt import Study
from jointopt.controllers import run_search
from jointopt.controllers.storage import is_storage_error, with_storage_retry
from jointopt.errors import StorageLost
from jointopt.evaluation import METRIC_KEYS


def _wait_complete(path: Path, n: int, proc: subprocess.Popen | None = None,
                   timeout: float = 180) -> list[optuna.trial.FrozenTrial]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"search exited early: {proc.returncode}")
        try:
            trials = load_trials(path)
        except Exception:  # noqa: BLE001  (study not created yet)
            trials = []
        if sum(t.state == TrialState.COMPLETE for t in trials) >= n:
            return trials
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} trials completed in {timeout} s")


def _search(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jointopt", "search", str(path), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_retry_backs_off_then_stops_with_one_line(trained_tiny, tmp_path) -> None:
    from sqlalchemy.exc import OperationalError

    study = Study.from_yaml(variant(trained_tiny, tmp_path, "backoff",
                                    storage_retry_seconds=5))
    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    calls, naps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise optuna.exceptions.StorageInternalError("wrapped") from lost
        return "done"

    assert with_storage_retry(study, flaky, sleep=naps.append) == "done"
    assert naps == [1.0, 2.0]
    with pytest.raises(ValueError):  # not a storage error: raised at once
        with_storage_retry(study, lambda: (_ for _ in ()).throw(ValueError("x")),
                           sleep=naps.append)
    assert is_storage_error(RuntimeError("x")) is False

    def down() -> None:
        raise lost

    clock = iter(range(0, 1000, 3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "monotonic", lambda: float(next(clock)))
        with pytest.raises(StorageLost, match="unreachable for 6 s.*run jointopt search again"):
            with_storage_retry(study, down, sleep=lambda s: None)


def test_an_outage_while_a_trial_is_being_claimed_loses_no_trial(trained_tiny, tmp_path,
                                                                 monkeypatch) -> None:
    """The storage creates a trial (named as this process's), then the connection drops before
    the answer comes back: the next pass must treat that RUNNING trial as its own orphan, not
    as another worker's trial that is about to finish."""
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import OperationalError

    from jointopt.controllers.storage import WORKER_ATTR

    path = variant(trained_tiny, tmp_path, "claim-outage", n_trials=5, storage_retry_seconds=30)
    real = RDBStorage._create_new_trial
    cut: list[int] = []

    def flaky(self, study_id, template_trial=None):  # type: ignore[no-untyped-def]
        frozen = real(self, study_id, template_trial)
        if frozen.number == 3 and not cut:
            assert frozen.system_attrs.get(WORKER_ATTR)  # named in the same transaction
            cut.append(frozen._trial_id)
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return frozen

    monkeypatch.setattr(RDBStorage, "_create_new_trial", flaky)
    run_search(Study.from_yaml(path), progress=False)
    assert cut  # the fault was injected
    trials = load_trials(path)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = {t.number for t in trials if t.state == TrialState.FAIL}
    assert failed == {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


@pytest.mark.slow
def test_storage_lost_mid_run_is_ridden_out_or_stops_cleanly(trained_tiny, tmp_path,
                                                             postgres) -> None:
    # A short outage: the search retries, reconnects and completes with nothing lost.
    short = variant(trained_tiny, tmp_path, "outage-short", storage=postgres.url, n_trials=40,
                    storage_retry_seconds=60)
    proc = _search(short)
    try:
        before = _wait_complete(short, 3, proc)
        postgres.stop()
        assert proc.poll() is None  # the outage hits a running search
        time.sleep(4)
        postgres.start()
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "retrying" in err
    after = load_trials(short)
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 40
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in before:
        if t.state == TrialState.COMPLETE:
            assert after[t.number].state == TrialState.COMPLETE
            assert after[t.number].values == t.values
    # A trial cut off by the outage is failed and queued again, never left RUNNING.
    failed = {t.number for t in after if t.state == TrialState.FAIL}
    assert failed == {t.user_attrs["retry_of"] for t in after if "retry_of" in t.user_attrs}

    # A long outage: bounded back-off, then one line, exit 3; finished trials stay stored.
    long = variant(trained_tiny, tmp_path, "outage-long", storage=postgres.url, n_trials=200,
                   storage_retry_seconds=4)
    proc = _search(long)
    try:
        _wait_complete(long, 3, proc)
        postgres.stop()
        t0 = time.time()
        out, err = proc.communicate(timeout=120)
        waited = time.time() - t0
    finally:
        proc.kill()
        postgres.start()
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 3, err
    assert len(lines) == 1 and "unreachable for" in lines[0] and "***" in lines[0]
    assert postgres.url.split(":")[2].split("@")[0] not in err  # the password is not printed
    assert waited < 60
    stored = [t for t in load_trials(long) if t.state == TrialState.COMPLETE]
    assert len(stored) >= 3
    assert all(set(METRIC_KEYS) <= set(t.user_attrs) for t in stored
               if "invalid" not in t.user_attrs)


def _dashboard_trials(path: Path, name: str) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "jointopt", "dashboard", str(path),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and f"127.0.0.1:{port}" in proc.stdout.readline()
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                            timeout=2) as f:
                    body = json.load(f)
                break
            except OSError:
                time.sleep(0.25)
        sid = next(s["study_id"] for s in body["study_summaries"] if s["study_name"] == name)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}",
                                    timeout=10) as f:
            return len(json.load(f)["trials"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_ray_worker_killed_mid_trial_is_retried_on_another_node(trained_tiny, tmp_path,
                                                                postgres) -> None:
    import ray
    from ray.cluster_utils import Cluster

    # The head runs the driver only; trials run on two 1-CPU worker nodes.
    # A dead node is noticed after 3 missed 1 s health checks rather than Ray's 5 x 3 s: the test
    # is about the retry, not about how long Ray waits before it calls a node dead.
    head = {**RAY_HEAD, "_system_config": {**RAY_HEAD["_system_config"],
                                           "health_check_period_ms": 1000,
                                           "health_check_timeout_ms": 2000,
                                           "health_check_failure_threshold": 3}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    n_trials = 5
    path = variant(trained_tiny, tmp_path, "node-loss", storage=postgres.url, n_trials=n_trials,
                   backend="ray", sampler={"name": "random", "seed": 1},
                   ray={"address": cluster.address, "max_concurrent_trials": 2,
                        "cpus_per_trial": 1, "max_failures": 3})
    # Longer latency runs keep a trial on its node long enough to be caught there.
    data = Study.from_yaml(path)
    import yaml

    raw = yaml.safe_load(path.read_text())
    raw["evaluate"] = {**raw.get("evaluate", {}), "latency_runs": 100}
    path.write_text(yaml.safe_dump(raw))
    killed: dict[str, object] = {}

    def saboteur() -> None:
        deadline = time.time() + 600
        while time.time() < deadline and "node" not in killed:
            try:
                trials = load_trials(path)
            except Exception:  # noqa: BLE001
                time.sleep(0.3)
                continue
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            if done >= 2 and len(running) == 2:  # both nodes busy: either one is mid-trial
                killed["running"] = running
                killed["dashboard"] = _dashboard_trials(path, "node-loss")
                cluster.remove_node(workers[0], allow_graceful=False)
                killed["node"] = True
                return
            time.sleep(0.2)

    spy = threading.Thread(target=saboteur, daemon=True)
    spy.start()
    try:
        ostudy = run_search(Study.from_yaml(path), progress=False)
    finally:
        spy.join(timeout=5)
        ray.shutdown()
        cluster.shutdown()
    assert killed.get("node"), "no moment with two trials running was seen"
    assert killed["dashboard"] >= 3  # the dashboard listed the study's trials mid-search
    trials = ostudy.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    # The trials that ran when the node died finished (retried on the surviving node).
    by_number = {t.number: t for t in trials}
    assert all(by_number[n].state == TrialState.COMPLETE for n in killed["running"])
    assert all(set(METRIC_KEYS) <= set(t.user_attrs) for t in complete
               if "invalid" not in t.user_attrs)
    assert data.search.backend == "ray"
