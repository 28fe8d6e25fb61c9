"""The Optuna backend: ``study.optimize`` in this process, ``n_jobs`` trials at a time."""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from jointopt.controllers.objective import find_repeat, run_trial, suggest_params
from jointopt.controllers.samplers import make_sampler
from jointopt.controllers.storage import (
    WORKER_ATTR,
    claim_trials,
    open_storage,
    open_study,
    recover_orphans,
    worker_id,
    worker_seed,
)
from jointopt.study import Study

__all__ = ["run_optuna", "count_complete"]

log = logging.getLogger(__name__)


def count_complete(ostudy: optuna.Study) -> int:
    return len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_optuna(study: Study, *, n_trials: int | None = None, n_jobs: int | None = None,
               progress: bool = True, storage_url: str | None = None,
               orphans: tuple[str, ...] = ()) -> optuna.Study:
    """Run or resume the study until ``n_trials`` trials are complete."""
    spec = study.search
    target = n_trials or spec.n_trials
    supernet = study.load_supernet()  # fails clearly before any trial if not trained
    storage = open_storage(study, url=storage_url)
    sampler = make_sampler(spec, n_objectives=len(spec.objectives))
    ostudy = open_study(study, storage, sampler=sampler)
    ostudy.sampler = claim_trials(make_sampler(spec, n_objectives=len(spec.objectives),
                                               seed=worker_seed(ostudy, spec.seed)))
    recover_orphans(ostudy, also=orphans, grace=spec.grace_period)
    done = count_complete(ostudy)
    if done + _running(ostudy) >= target:  # other workers are finishing the budget
        return ostudy
    me = worker_id()
    repeat = find_repeat(ostudy)
    bar = tqdm(total=target, initial=done, disable=not progress, desc=f"search {study.name}",
               unit="trial")

    def objective(trial: optuna.Trial) -> list[float]:
        trial.storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, me)
        params = suggest_params(trial, study)
        out = run_trial(study, params, supernet=supernet, repeat=repeat)
        for k, v in out.user_attrs.items():
            trial.set_user_attr(k, v)
        for k, v in out.constraints.items():
            trial.set_constraint(k, v)
        return out.values

    def on_done(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        bar.update(1)
        if progress and t.state == TrialState.COMPLETE:
            a = t.user_attrs
            what = "invalid" if "invalid" in a else (
                f"acc={a['accuracy']:.3f} lat={a['latency_ms']:.2f}ms "
                f"E={a['energy_mj']:.4f}mJ" + (" (repeat)" if "repeat_of" in a else ""))
            tqdm.write(f"trial {t.number:>3} {a.get('config_key', '')}: {what}")
        if count_complete(s) + _running(s) >= target:
            s.stop()

    t0 = time.perf_counter()
    try:
        ostudy.optimize(objective, n_trials=target - done, timeout=spec.timeout,
                        n_jobs=n_jobs or spec.n_jobs, catch=(Exception,), callbacks=[on_done],
                        gc_after_trial=False)
    finally:
        bar.close()
    log.info("search ran %.0f s", time.perf_counter() - t0)
    return ostudy


def _running(s: optuna.Study) -> int:
    return len(s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def summary(ostudy: optuna.Study) -> dict[str, Any]:
    states = [t.state.name for t in ostudy.get_trials(deepcopy=False)]
    return {s: states.count(s) for s in sorted(set(states))}
