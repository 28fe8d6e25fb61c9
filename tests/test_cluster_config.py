"""Workers that lack the study's configuration, and searches whose trials all fail.

The case from the field: ``JOINTOPT_STORAGE`` exported on the driver after ``ray start``, so
the Ray workers never had it. Every trial failed on its worker, Ray retried each one,
``jointopt search`` exited 0, and the baseline's failed trial was never queued again, so
``pareto`` stayed blocked for good. Workers no longer open the storage at all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import RAY_HEAD, run_cli, variant
from optuna.trial import TrialState

VAR = "JOINTOPT_TEST_CLUSTER_STORAGE"


@pytest.mark.slow
def test_worker_without_the_storage_variable_runs_trials(trained_tiny, tmp_path,
                                                         monkeypatch) -> None:
    """The field case (the storage variable set on the driver only) now simply works: only
    the driver talks to the storage (the searcher asks and tells, and re-draws repeats), so a
    worker needs the study's files, not its storage."""
    import ray
    from ray.cluster_utils import Cluster

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    seed = {"depth": 2, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": 0,
            "w_bits": 8, "a_bits": 8}
    monkeypatch.delenv(VAR, raising=False)
    # The head runs the driver only; trials run on a worker node started without the variable.
    cluster = Cluster(initialize_head=True, head_node_args=RAY_HEAD)
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        path = variant(trained_tiny, tmp_path, "no-env", storage=f"env:{VAR}", n_trials=3,
                       backend="ray", sampler={"name": "random", "seed": 0},
                       seed_configs=[seed],
                       ray={"address": cluster.address, "max_concurrent_trials": 1,
                            "cpus_per_trial": 1, "max_failures": 2})
        env = {**os.environ, VAR: url}  # set on the driver only, after the nodes started
        r = run_cli("search", str(path), "--quiet", env=env, timeout=600)
        assert r.returncode == 0, r.stderr
    finally:
        ray.shutdown()
        cluster.shutdown()
    complete = _complete_with_a_working_pareto(path, "no-env", url, env)
    assert any(t.user_attrs.get("seed_config") and t.user_attrs["config_key"] ==
               "d2_e16_h1_m1_r0_w8a8" for t in complete)


def _complete_with_a_working_pareto(path: Path, name: str, url: str, env: dict[str, str]
                                    ) -> list[optuna.trial.FrozenTrial]:
    """The study's 3 trials are complete, the baseline among them, and ``pareto`` works."""
    trials = optuna.load_study(study_name=name, storage=url).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3, [(t.state, t.user_attrs.get("error")) for t in trials]
    assert any(t.user_attrs.get("baseline") for t in complete)
    r = run_cli("pareto", str(path), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "baseline (trial" in r.stdout
    return complete


def test_search_in_which_no_trial_completes_exits_non_zero(trained_tiny, tmp_path,
                                                           capfd) -> None:
    from jointopt.cli import main
    from jointopt.cost import register_cost_model

    @register_cost_model("latency", "test-broken-device")
    class Broken:  # a device plugin whose runtime is not installed
        def __call__(self, ctx: object) -> dict[str, float]:
            raise RuntimeError("libdevice.so: cannot open shared object file")

    path = variant(trained_tiny, tmp_path, "broken", n_trials=3)
    data = yaml.safe_load(path.read_text())
    data["evaluate"]["latency"] = "test-broken-device"
    path.write_text(yaml.safe_dump(data))
    capfd.readouterr()
    assert main(["search", str(path), "--quiet"]) == 1
    err = capfd.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "no trial completed" in errors[0] and "libdevice" in errors[0]


def test_user_error_inside_a_trial_stops_the_search_with_one_line(trained_tiny, tmp_path,
                                                                   capfd) -> None:
    from jointopt.cli import main
    from jointopt.cost import register_cost_model
    from jointopt.errors import UserError

    @register_cost_model("latency", "test-unplugged-device")
    class Unplugged:
        def __call__(self, ctx: object) -> dict[str, float]:
            raise UserError(f"{path}: evaluate.latency='test-unplugged-device': no device")

    path = variant(trained_tiny, tmp_path, "unplugged", n_trials=4)
    data = yaml.safe_load(path.read_text())
    data["evaluate"]["latency"] = "test-unplugged-device"
    path.write_text(yaml.safe_dump(data))
    capfd.readouterr()
    assert main(["search", str(path), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert err.splitlines() == [f"error: {path}: evaluate.latency='test-unplugged-device': "
                                "no device"], err
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    trials = optuna.load_study(study_name="unplugged", storage=storage).trials
    assert [(t.state, t.user_attrs.get("baseline")) for t in trials] == [(TrialState.FAIL, True)]
    # Fixed (the default runtime again): the failed baseline is queued again and completes.
    data["evaluate"]["latency"] = "measured"
    path.write_text(yaml.safe_dump(data))
    assert main(["search", str(path), "--quiet"]) == 0
    trials = optuna.load_study(study_name="unplugged", storage=storage).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and done[0].user_attrs.get("baseline") is True
    assert main(["pareto", str(path)]) == 0


@pytest.mark.slow
def test_node_with_a_bad_setting_stops_the_search_then_the_study_resumes(trained_tiny, tmp_path
                                                                          ) -> None:
    """A worker node whose environment breaks every trial (its JOINTOPT_CACHE names a file, not
    a folder): the search stops within a minute with one line that names the setting and the
    node, exit 2, and Ray does not retry it. With the node replaced, the same study resumes to
    a complete baseline and a working ``pareto``."""
    import ray
    from ray.cluster_utils import Cluster

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    bad = tmp_path / "not-a-folder"
    bad.write_text("")
    good = os.environ["JOINTOPT_CACHE"]  # the tests' cache (conftest)
    cluster = Cluster(initialize_head=True, head_node_args=RAY_HEAD)
    try:
        os.environ["JOINTOPT_CACHE"] = str(bad)  # what the node starts with
        try:
            node = cluster.add_node(num_cpus=1)
        finally:
            os.environ["JOINTOPT_CACHE"] = good
        cluster.wait_for_nodes()
        path = variant(trained_tiny, tmp_path, "bad-node", storage=url, n_trials=3,
                       backend="ray", sampler={"name": "random", "seed": 0},
                       ray={"address": cluster.address, "max_concurrent_trials": 1,
                            "cpus_per_trial": 1, "max_failures": 2})
        t0 = time.monotonic()
        r = run_cli("search", str(path), "--quiet", env=dict(os.environ), timeout=600)
        seconds = time.monotonic() - t0
        assert r.returncode == 2, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "JOINTOPT_CACHE=" in errors[0] and "on Ray worker node" in errors[0], errors
        assert seconds < 60
        # The fix: the node is replaced by one with a working cache; the study resumes.
        cluster.remove_node(node)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        r = run_cli("search", str(path), "--quiet", env=dict(os.environ), timeout=600)
        assert r.returncode == 0, r.stderr
    finally:
        ray.shutdown()
        cluster.shutdown()
    _complete_with_a_working_pareto(path, "bad-node", url, dict(os.environ))
