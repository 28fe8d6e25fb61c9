"""jointopt's writes to Optuna trials go through Optuna's public storage API (issue 15): the
trial id from the study name and the trial number, with the storage passed explicitly."""

from __future__ import annotations

import os
import socket

import optuna
import pytest
from helpers.analytic import SPACE, analytic_metrics
from optuna.trial import FrozenTrial, TrialState

from jointopt.controllers.samplers import check_sampler_options, make_sampler
from jointopt.controllers.spec import SamplerSpec, SearchSpec
from jointopt.controllers.staged import StagedSampler
from jointopt.controllers.storage import (
    WORKER_ATTR,
    claim_trials,
    recover_orphans,
    trial_id,
    worker_id,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_trial_id_names_the_trial_of_that_study_and_number() -> None:
    storage = optuna.storages.InMemoryStorage()
    a = optuna.create_study(study_name="a", storage=storage)
    b = optuna.create_study(study_name="b", storage=storage)
    for study in (a, b, a):
        study.ask()
    storage.set_trial_system_attr(trial_id(storage, "a", 1), "mark", "a1")
    storage.set_trial_system_attr(trial_id(storage, "b", 0), "mark", "b0")
    assert [t.system_attrs.get("mark") for t in a.trials] == [None, "a1"]
    assert [t.system_attrs.get("mark") for t in b.trials] == ["b0"]


class _Recorder(optuna.samplers.RandomSampler):
    """Notes the class of the study each before_trial hook gets."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.seen: list[str] = []

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.seen.append(type(study).__name__)
        super().before_trial(study, trial)


def test_before_trial_hooks_work_on_a_pruners_filtered_study() -> None:
    # HyperbandPruner hands samplers a _BracketStudy, which refuses most attributes; the hooks
    # use only its study_name (and get_trials).
    storage = optuna.storages.InMemoryStorage()
    recorder = _Recorder()
    study = optuna.create_study(sampler=claim_trials(recorder, storage), storage=storage,
                                pruner=optuna.pruners.HyperbandPruner())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert recorder.seen and set(recorder.seen) == {"_BracketStudy"}
    assert all(t.system_attrs.get(WORKER_ATTR) for t in study.trials)


def test_staged_records_its_stages_beside_the_claims() -> None:
    # (No pruner here: the axiswise samplers read study.metric_names, which Hyperband's
    # filtered study refuses; jointopt sets no pruner.)
    storage = optuna.storages.InMemoryStorage()
    staged = StagedSampler(space=SPACE, n_trials=6, seed=0, n_startup=2, storage=storage)
    study = optuna.create_study(study_name="staged", sampler=claim_trials(staged, storage),
                                storage=storage, directions=["maximize", "minimize"])

    def objective(trial: optuna.Trial) -> list[float]:
        cfg = SPACE.suggest(trial)
        trial.set_user_attr("config", cfg.to_dict())
        trial.set_user_attr("config_key", cfg.key())
        m = analytic_metrics(cfg)
        return [m["accuracy"], m["latency_ms"]]

    study.optimize(objective, n_trials=6)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert [t.system_attrs.get("jointopt:stage") for t in study.trials] == [1, 1, 1, 2, 3, 3]
    assert all(t.system_attrs.get(WORKER_ATTR) for t in study.trials)


def test_make_sampler_gives_the_storage_to_a_factory_that_takes_it() -> None:
    storage = optuna.storages.InMemoryStorage()
    spec = SearchSpec(sampler=SamplerSpec("staged", options={"n_trials": 9}))
    sampler = make_sampler(spec, n_objectives=2, space=SPACE, storage=storage)
    assert isinstance(sampler, StagedSampler) and sampler.storage is storage
    spec = SearchSpec(sampler=SamplerSpec("nsga2"))  # takes **kw: not given
    assert isinstance(make_sampler(spec, n_objectives=2, storage=storage),
                      optuna.samplers.NSGAIISampler)
    try:
        check_sampler_options("staged", {"storage": "x"})
    except TypeError as e:
        assert "not a sampler option" in str(e)
    else:
        raise AssertionError("storage accepted as a sampler option")


def test_recover_orphans_fails_and_requeues_a_dead_workers_trial() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage)
    dead = study.ask()
    dead.suggest_float("x", 0, 1)
    pid = 2**22 + 17  # beyond pid_max on most systems: no such process
    while os.path.exists(f"/proc/{pid}"):
        pid += 1
    storage.set_trial_system_attr(trial_id(storage, "s", dead.number), WORKER_ATTR,
                                  f"{socket.gethostname()}:{pid}:1")
    alive = study.ask()  # no owner and young: left alone
    assert recover_orphans(study, storage) == [dead.number]
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert study.trials[2].user_attrs["retry_of"] == dead.number
    assert study.trials[2].params == {} and alive.number == 1


def test_a_trial_cut_off_between_its_creation_and_its_hand_over_is_this_workers_orphan(
        tmp_path) -> None:
    """The storage can go away after creating a trial and before Optuna reads it back for the
    sampler. The trial is created already named as this worker's, so its next pass fails and
    re-queues it at once, instead of leaving it RUNNING (a search then stops one config short)."""
    from sqlalchemy.exc import OperationalError

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.sampler = claim_trials(optuna.samplers.RandomSampler(seed=0), storage)
    real = storage.get_trial

    def lost(trial_id: int) -> FrozenTrial:
        raise OperationalError("SELECT", {}, ConnectionError("server closed the connection"))

    storage.get_trial = lost  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        study.ask()
    storage.get_trial = real  # type: ignore[method-assign]
    (cut,) = study.get_trials(states=(TrialState.RUNNING,))
    assert cut.system_attrs.get(WORKER_ATTR) == worker_id()
    other = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")  # the next pass's
    again = optuna.load_study(study_name="s", storage=other)
    assert recover_orphans(again, other, also=(worker_id(),)) == [cut.number]
    assert [t.state for t in again.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert again.trials[1].user_attrs["retry_of"] == cut.number


_KILLED_IN_THE_WINDOW = """
import os, signal, sys
import optuna
from jointopt.controllers.storage import claim_trials
storage = optuna.storages.RDBStorage(sys.argv[1])
study = optuna.load_study(study_name="s", storage=storage)
study.sampler = claim_trials(optuna.samplers.RandomSampler(seed=0), storage)
# the trial is created, then the process dies before Optuna hands it to the sampler
storage.get_trial = lambda trial_id: os.kill(os.getpid(), signal.SIGKILL)
study.ask()
"""


def test_a_process_killed_right_after_creating_a_trial_leaves_it_named(tmp_path) -> None:
    """A worker killed (SIGKILL) between the storage's creating a trial and Optuna's handing it
    to the sampler: the trial already names the dead worker, so a restarted search fails and
    re-queues it at once rather than waiting out the grace period for an ownerless trial."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name="s", storage=storage)
    proc = subprocess.run([sys.executable, "-c", _KILLED_IN_THE_WINDOW, url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    study = optuna.load_study(study_name="s", storage=storage)
    (cut,) = study.get_trials(states=(TrialState.RUNNING,))
    assert cut.system_attrs.get(WORKER_ATTR) not in (None, worker_id())  # the dead worker
    assert recover_orphans(study, storage, grace=3600.0) == [cut.number]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
