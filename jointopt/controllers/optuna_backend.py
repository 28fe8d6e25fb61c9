"""The Optuna backend: ``study.optimize`` in this process, ``n_jobs`` trials at a time.

The search runs until ``n_trials`` distinct configs are complete: a repeat suggestion is pruned
at once (``repeat_of`` names the trial that measured it) and does not count, and a space with
fewer distinct configs than the budget stops once it is exhausted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from jointopt.controllers.anchors import pending_anchors, requeue_anchors
from jointopt.controllers.objective import (
    InvalidConfig,
    find_repeat,
    run_trial,
    store_constraints,
    suggest_config,
)
from jointopt.controllers.samplers import make_sampler
from jointopt.controllers.storage import (
    check_storage,
    claim_trials,
    open_storage,
    open_study,
    recover_orphans,
    trial_id,
    worker_seed,
)
from jointopt.errors import SearchFailed, UserError, clip
from jointopt.study import Study

__all__ = ["run_optuna", "count_complete", "summary", "MAX_REPEATS_IN_A_ROW"]

log = logging.getLogger(__name__)
#: Consecutive repeat suggestions after which a search stops: its sampler keeps drawing
#: configs it has measured (a space nearly exhausted for it).
MAX_REPEATS_IN_A_ROW = 200
#: Consecutive failed trials after which a search stops (the budget counts completed configs,
#: so a fault that fails every trial would otherwise never end the search).
MAX_FAILS_IN_A_ROW = 10


def count_complete(ostudy: optuna.Study) -> int:
    return len(ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_optuna(study: Study, *, n_trials: int | None = None, n_jobs: int | None = None,
               progress: bool = True, storage_url: str | None = None,
               orphans: tuple[str, ...] = ()) -> optuna.Study:
    """Run or resume the study until ``n_trials`` trials are complete."""
    spec = study.search
    target = n_trials or spec.n_trials
    check_storage(study, url=storage_url)  # reachable? (creates nothing; before torch loads)
    supernet = study.load_supernet()  # fails clearly before any trial if not trained
    study.data()  # a bad dataset is one line now, before the storage is written (cached)
    storage = open_storage(study, url=storage_url)
    sampler = make_sampler(spec, n_objectives=len(spec.objectives), space=study.space)
    ostudy = open_study(study, storage, sampler=sampler)
    ostudy.sampler = claim_trials(make_sampler(spec, n_objectives=len(spec.objectives),
                                               seed=worker_seed(ostudy, spec.seed),
                                               space=study.space, storage=storage), storage)
    recover_orphans(ostudy, storage, also=orphans, grace=spec.grace_period)
    requeue_anchors(ostudy, study)
    done = count_complete(ostudy)
    target = max(target, done + pending_anchors(ostudy))
    if done + _running(ostudy) >= target:  # other workers are finishing the budget
        return ostudy
    repeat = find_repeat(ostudy)
    bar = tqdm(total=target, initial=done, disable=not progress, desc=f"search {study.name}",
               unit="trial")

    size = study.space.size()
    repeats_in_a_row = fails_in_a_row = 0
    errors: list[Exception] = []
    user_errors: list[UserError] = []
    completed: list[int] = []

    def objective(trial: optuna.Trial) -> list[float]:
        cfg = suggest_config(trial, study)
        earlier = repeat(cfg.key())
        if earlier is not None:
            trial.set_user_attr("repeat_of", earlier)
            raise optuna.TrialPruned(f"repeat of trial {earlier}")
        try:
            out = run_trial(study, cfg, supernet=supernet)
        except InvalidConfig as e:
            trial.set_user_attr("invalid", str(e))
            raise
        except UserError as e:
            # The study's input is wrong (a dataset file, a setting): every further trial
            # would fail the same way. Stop after this one and say it once.
            user_errors.append(e)
            trial.study.stop()
            raise
        except Exception as e:
            errors.append(e)
            raise
        for k, v in out.user_attrs.items():
            trial.set_user_attr(k, v)
        tid = trial_id(trial.storage, trial.study.study_name, trial.number)
        store_constraints(trial.storage, tid, out.constraints)
        return out.values

    def on_done(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        nonlocal repeats_in_a_row, fails_in_a_row
        repeats_in_a_row = repeats_in_a_row + 1 if t.state == TrialState.PRUNED else 0
        fails_in_a_row = fails_in_a_row + 1 if t.state == TrialState.FAIL else 0
        a = t.user_attrs
        if t.state == TrialState.COMPLETE:
            completed.append(t.number)
            bar.update(1)
            if progress:
                tqdm.write(f"trial {t.number:>3} {a.get('config_key', '')}: "
                           f"acc={a['accuracy']:.3f} lat={a['latency_ms']:.2f}ms "
                           f"thr={a['throughput_ips']:.0f}/s E={a['energy_mj']:.4f}mJ")
        done = count_complete(s)
        if done + _running(s) >= target:
            s.stop()
        elif done >= size:
            log.warning("the search space holds %d distinct configs, all evaluated: stopping",
                        size)
            s.stop()
        elif fails_in_a_row >= MAX_FAILS_IN_A_ROW:
            log.warning("%d trials in a row failed: stopping", fails_in_a_row)
            s.stop()
        elif repeats_in_a_row >= MAX_REPEATS_IN_A_ROW:
            log.warning("the sampler suggested %d configs in a row that were evaluated "
                        "before: stopping at %d distinct configs", repeats_in_a_row, done)
            s.stop()

    t0 = time.perf_counter()
    quiet = _QuietUserErrors()
    optuna_log = logging.getLogger("optuna.study._optimize")  # logs each failed trial
    optuna_log.addFilter(quiet)
    try:
        ostudy.optimize(objective, n_trials=None, timeout=spec.timeout,
                        n_jobs=n_jobs or spec.n_jobs, catch=(Exception,),
                        callbacks=[on_done], gc_after_trial=False)
    finally:
        optuna_log.removeFilter(quiet)
        bar.close()
    log.info("search ran %.0f s", time.perf_counter() - t0)
    if user_errors:
        raise user_errors[0]
    if errors and not completed:
        raise SearchFailed(f"{study.path}: no trial completed: {len(errors)} failed, the first "
                           f"with {type(errors[0]).__name__}: "
                           f"{clip(str(errors[0]) or '(no message)', 300)}")
    return ostudy


class _QuietUserErrors(logging.Filter):
    """Drops Optuna's "Trial N failed ... Traceback" record for a UserError: the search stops
    and the CLI prints it as one line."""

    def __init__(self) -> None:
        super().__init__()
        self._dropped: set[str] = set()  # "Trial N " of the records dropped

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = " ".join(message.split(" ")[:2]) + " "
        if isinstance(record.exc_info[1] if record.exc_info else None, UserError):
            self._dropped.add(prefix)
            return False
        # Optuna follows that record with "Trial N failed with value None." for the same trial.
        return not (prefix in self._dropped and "failed with value" in message)


def _running(s: optuna.Study) -> int:
    return len(s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def summary(ostudy: optuna.Study) -> dict[str, Any]:
    """Trials by state, plus how many of the complete ones are distinct configs and how many
    suggestions were repeats (pruned, not measured)."""
    trials = ostudy.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    out: dict[str, Any] = {s: states.count(s) for s in sorted(set(states))}
    out["distinct_configs"] = len({t.user_attrs.get("config_key") for t in trials
                                   if t.state == TrialState.COMPLETE})
    out["repeats"] = sum(1 for t in trials if "repeat_of" in t.user_attrs)
    return out
