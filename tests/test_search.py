from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import load_trials, run_cli, variant
from optuna.trial import TrialState

from jointopt import Study
from jointopt.controllers import run_search
from jointopt.controllers.objective import InvalidConfig, run_trial, trial_record
from jointopt.evaluation import METRIC_KEYS


def test_optuna_search_stores_params_metrics_and_constraints(trained_tiny, tmp_path) -> None:
    study = Study.from_yaml(variant(trained_tiny, tmp_path, "opt"))
    ostudy = run_search(study, progress=False)
    done = [t for t in ostudy.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    assert done[0].user_attrs.get("baseline") is True
    assert study.space.config_from_params(done[0].params) == study.space.max_config
    assert ostudy.metric_names == ["accuracy", "latency_ms", "energy_mj"]
    for t in done:
        # define-by-run: only the layers that exist, and one precision parameter
        cfg = study.space.config_from_params(t.params)
        assert set(t.params) == set(study.space.param_names(cfg.depth))
        assert "w_bits" not in t.params and t.params["precision"] == cfg.precision
        # constraints where optuna-dashboard reads them, in the study's order
        assert t.system_attrs["constraints"] == [0.2 - t.user_attrs["accuracy"]]
        assert set(METRIC_KEYS) <= set(t.user_attrs)
        assert t.values[0] == t.user_attrs["accuracy"]
        assert all(v == v and abs(v) != float("inf") for v in t.values)
        rec = trial_record(t)
        assert rec is not None and rec["feasible"] == (t.user_attrs["accuracy"] >= 0.2)
    # n_trials counts distinct configs: repeats are pruned, never counted or measured
    keys = [t.user_attrs["config_key"] for t in done]
    assert len(set(keys)) == len(keys)
    for t in ostudy.trials:
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["config_key"] in keys and "repeat_of" in t.user_attrs
    # Running it again completes nothing more: the study is at n_trials.
    again = run_search(study, progress=False)
    assert len([t for t in again.trials if t.state == TrialState.COMPLETE]) == 6


@pytest.mark.parametrize("sampler", ["axiswise", "tpe", "random"])
def test_every_sampler_completes_distinct_configs(trained_tiny, tmp_path, sampler) -> None:
    path = variant(trained_tiny, tmp_path, sampler, n_trials=9,
                   sampler={"name": sampler, "seed": 1} | (
                       {"n_startup": 2} if sampler == "axiswise" else {}))
    ostudy = run_search(Study.from_yaml(path), progress=False)
    done = [t for t in ostudy.trials if t.state == TrialState.COMPLETE]
    keys = {t.user_attrs["config_key"] for t in done}
    assert len(done) == len(keys) == 9
    if sampler == "axiswise":  # it proposes only configs it has not measured
        assert not [t for t in ostudy.trials if t.state == TrialState.PRUNED]


def test_an_exhausted_space_stops_the_search(trained_tiny, tmp_path) -> None:
    space = yaml.safe_load((trained_tiny.parent / "space.yaml").read_text())
    space["choices"] = {"depth": [3], "embed_dim": [32], "num_heads": [2], "mlp_ratio": [2.0],
                        "tome_r": [0], "precision": ["w32a32", "w8a8", "w16a16"]}
    (tmp_path / "bits-space.yaml").write_text(yaml.safe_dump(space))
    path = variant(trained_tiny, tmp_path, "bits", n_trials=8,
                   sampler={"name": "random", "seed": 0})
    data = yaml.safe_load(path.read_text())
    data["search_space"] = str(tmp_path / "bits-space.yaml")
    path.write_text(yaml.safe_dump(data))
    ostudy = run_search(Study.from_yaml(path), progress=False)
    done = [t for t in ostudy.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 == Study.from_yaml(path).space.size()


def test_a_rejected_config_fails_without_values(trained_tiny) -> None:
    study = Study.from_yaml(trained_tiny)
    bad = dataclasses.replace(study.space.max_config, depth=9)
    with pytest.raises(InvalidConfig, match="depth=9"):
        run_trial(study, bad)


@pytest.mark.parametrize("storage", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_resume_after_sigkill_loses_and_repeats_nothing(trained_tiny, tmp_path, storage,
                                                        request) -> None:
    extra = {}
    if storage == "postgresql":
        import uuid

        extra["storage"] = request.getfixturevalue("postgres").create_database(
            f"killed_{uuid.uuid4().hex[:8]}")
    path = variant(trained_tiny, tmp_path, "killed", n_trials=9, **extra)
    proc = subprocess.Popen([sys.executable, "-m", "jointopt", "search", str(path), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    before: list[optuna.trial.FrozenTrial] = []
    while time.time() < deadline:
        time.sleep(0.5)
        # Frozen while its trials are read, so a trial seen RUNNING is still running when the
        # kill lands (it cannot finish in between).
        proc.send_signal(signal.SIGSTOP)
        try:
            before = load_trials(path)
        except (KeyError, Exception):  # noqa: BLE001  (study not created yet, or locked)
            before = []
        states = [t.state for t in before]
        if states.count(TrialState.COMPLETE) >= 3 and TrialState.RUNNING in states:
            break
        proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # A kill mid-evaluation leaves no temporary folder among the study's results.
    assert not [p.name for p in (trained_tiny.parent / "out").iterdir()
                if p.name.startswith("tmp")]
    before = load_trials(path)
    complete_before = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    assert len(complete_before) >= 3
    r = run_cli("search", str(path), "--quiet")
    assert r.returncode == 0, r.stderr
    after = load_trials(path)
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 9
    for n, values in complete_before.items():  # nothing completed was lost or re-run
        assert after[n].state == TrialState.COMPLETE and after[n].values == values
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))
    orphans = [t for t in after if t.state == TrialState.FAIL]
    retried = [t for t in after if "retry_of" in t.user_attrs]
    assert len(orphans) == len(retried) >= 1
    assert {t.user_attrs["retry_of"] for t in retried} == {t.number for t in orphans}


@pytest.fixture(scope="module")
def searched_keep(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[Path, Path]:
    """A storage holding a finished 2-trial search of study "keep" (searched once per module:
    the cases below each copy it and then try a bad change against it)."""
    tmp = tmp_path_factory.mktemp("keep")
    first = variant(trained_tiny, tmp, "keep", n_trials=2)
    r = run_cli("search", str(first), "--quiet")
    assert r.returncode == 0, r.stderr
    return trained_tiny, tmp / "optuna.db"


@pytest.mark.parametrize(
    ("search", "needle"),
    [
        ({"objectives": {"accuracy": "maximize", "speed": "minimize"}}, "search.objectives.speed"),
        ({"sampler": {"name": "annealing"}}, "search.sampler.name='annealing'"),
        ({"constraints": ["flops <= 3"]}, "unknown metric 'flops'"),
        ({"storage": "postgresql://jointopt@127.0.0.1:9/none"}, "cannot open storage"),
        ({"objectives": {"accuracy": "maximize", "params": "minimize"}}, "exists in the storage"),
    ],
)
def test_bad_search_input_is_one_line_exit_2_and_leaves_storage(searched_keep, tmp_path,
                                                                 search, needle) -> None:
    trained_tiny, searched = searched_keep
    db = tmp_path / "optuna.db"
    shutil.copyfile(searched, db)  # every case starts from the same searched storage
    snapshot = db.read_bytes()
    bad = variant(trained_tiny, tmp_path, "keep", n_trials=3, **search)
    r = run_cli("search", str(bad), "--quiet")
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.strip().count("\n") == 0
    assert db.read_bytes() == snapshot


def test_dashboard_serves_the_study_on_loopback(trained_tiny, tmp_path) -> None:
    import json
    import socket
    import urllib.request

    path = variant(trained_tiny, tmp_path, "dash", n_trials=4,
                   sampler={"name": "axiswise", "seed": 0, "n_startup": 1})
    assert run_cli("search", str(path), "--quiet").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "jointopt", "dashboard", str(path),
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert f"http://127.0.0.1:{port}/" in line
        body = None
        for _ in range(60):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as f:
                    body = json.load(f)
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None
        sid = next(s["study_id"] for s in body["study_summaries"] if s["study_name"] == "dash")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}", timeout=5) as f:
            detail = json.load(f)
        assert len(detail["trials"]) == 4
        assert detail["objective_names"] == ["accuracy", "latency_ms", "energy_mj"]
        space = Study.from_yaml(path).space
        for t in detail["trials"]:
            assert t["state"] == "Complete"
            assert any(a["key"] == "accuracy" for a in t["user_attrs"])
            accuracy = float(next(a["value"] for a in t["user_attrs"] if a["key"] == "accuracy"))
            assert t["constraints"] == [pytest.approx(0.2 - accuracy)]
            names = {p["name"] for p in t["params"]}
            depth = int(next(p["param_external_value"] for p in t["params"]
                             if p["name"] == "depth"))
            assert names == set(space.param_names(depth))  # only the layers that exist
            assert all(v not in ("inf", "-inf", "nan") for v in t["values"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_ray_backend_writes_the_same_study(trained_tiny, tmp_path) -> None:
    opt = Study.from_yaml(variant(trained_tiny, tmp_path, "via-optuna", n_trials=3))
    ray_study = Study.from_yaml(variant(trained_tiny, tmp_path, "via-ray", n_trials=4,
                                        backend="ray", ray={"max_concurrent_trials": 2}))
    run_search(opt, progress=False)
    env_before = os.environ.get("RAY_ADDRESS")
    try:
        run_search(ray_study, progress=False)
    finally:
        import ray

        ray.shutdown()
        assert os.environ.get("RAY_ADDRESS") == env_before
    loaded = optuna.load_study(study_name="via-ray", storage=ray_study.storage_url)
    done = [t for t in loaded.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    ref = next(t for t in optuna.load_study(study_name="via-optuna",
                                            storage=opt.storage_url).trials
               if "invalid" not in t.user_attrs)
    valid = [t for t in done if "invalid" not in t.user_attrs]
    # Keys a trial carries only sometimes (README, "Metrics" and "Faults"): a repeat, the
    # baseline, a seed config, a retried orphan, a timing taken on busy cores.
    optional = {"repeat_of", "baseline", "seed_config", "retry_of", "latency_contended"}
    assert valid
    for t in valid:
        assert set(t.user_attrs) - optional == set(ref.user_attrs) - optional, (
            t.number, set(t.user_attrs) ^ set(ref.user_attrs))
    assert all(set(t.constraints) == set(ref.constraints) for t in done)
    assert set(done[0].params) == set(ref.params)


def test_seed_configs_are_validated_and_queued_after_the_baseline(trained_tiny, tmp_path) -> None:
    seed = {"depth": 2, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": 1,
            "w_bits": 8, "a_bits": 8}
    bad = variant(trained_tiny, tmp_path, "seeded", seed_configs=[{**seed, "num_heads": 9}])
    r = run_cli("search", str(bad), "--quiet")
    assert r.returncode == 2 and "search.seed_configs[0]" in r.stderr and "num_heads=9" in r.stderr
    study = Study.from_yaml(variant(trained_tiny, tmp_path, "seeded", n_trials=3,
                                    seed_configs=[seed]))
    trials = run_search(study, progress=False).trials
    assert trials[0].user_attrs["baseline"] is True
    assert trials[1].user_attrs["seed_config"] is True
    assert trials[1].user_attrs["config_key"] == "d2_e16_h1_m1_r1_w8a8"
