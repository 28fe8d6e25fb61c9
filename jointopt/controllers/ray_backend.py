"""The Ray Tune backend: ``Tuner`` + ``OptunaSearch`` writing into the same Optuna study.

Ray's ``OptunaSearch`` stores only objective values. :class:`JointOptunaSearch` adds what the
Optuna backend stores (every metric as a user_attr, the constraints, the owning process), so a
study reads the same whichever backend ran it. The supernet goes into Ray's object store once
(``tune.with_parameters``); workers never reload it from disk.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import optuna

from jointopt.controllers.anchors import pending_anchors, requeue_anchors
from jointopt.controllers.objective import (
    InvalidConfig,
    find_repeat,
    run_trial,
    store_constraints,
)
from jointopt.controllers.optuna_backend import count_complete
from jointopt.controllers.samplers import make_sampler
from jointopt.controllers.storage import (
    WORKER_ATTR,
    check_storage,
    note_created,
    open_storage,
    open_study,
    recover_orphans,
    trial_id,
    worker_id,
    worker_seed,
)
from jointopt.errors import SearchFailed, UserError, clip
from jointopt.study import Study

__all__ = ["run_ray", "init_ray"]

log = logging.getLogger(__name__)
_ATTRS = "jointopt_attrs"
_CONS = "jointopt_constraints"
_INVALID = "jointopt_invalid"
#: Repeat suggestions drawn again in a row before the searcher reports its space exhausted.
MAX_REDRAWS = 200
#: A trial that hit a mistake in the study's input on its worker reports this instead of
#: metrics: the trial fails, the run stops, and the driver raises it as one line.
_USER_ERROR = "jointopt_user_error"


def _trial_id_of(ot: optuna.Trial) -> int:
    """The storage's id of OptunaSearch's Optuna trial (not Ray's trial id, a string)."""
    return trial_id(ot.storage, ot.study.study_name, ot.number)


def _searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch

    class JointOptunaSearch(OptunaSearch):  # type: ignore[misc]
        """OptunaSearch that also stores user_attrs and constraints on the Optuna trial."""

        def __init__(self, *args: Any, owner: str, study: Study, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._owner = owner
            # not `_space`: OptunaSearch keeps its define-by-run function there
            self._jointopt_space = study.space
            self._pending: dict[str, str] = {}

        def suggest(self, trial_id: str) -> dict | None:
            """The next config no trial has measured: a repeat suggestion is pruned here and
            drawn again, so Ray never runs it and ``num_samples`` counts distinct configs."""
            from ray.tune.search import Searcher

            for _ in range(MAX_REDRAWS):
                params = super().suggest(trial_id)
                ot = self._ot_trials.get(trial_id)
                if params is None or ot is None:
                    return params
                note_created(ot.study.study_name, ot.number)
                ot.storage.set_trial_system_attr(_trial_id_of(ot), WORKER_ATTR, self._owner)
                cfg = self._jointopt_space.config_from_params(params)
                key = cfg.key()
                assert self._ot_study is not None
                earlier = find_repeat(self._ot_study)(key)
                if earlier is None and key not in self._pending.values():
                    self._pending[trial_id] = key
                    ot.set_user_attr("config", cfg.to_dict())
                    ot.set_user_attr("config_key", key)
                    return params
                ot.set_user_attr("repeat_of", earlier if earlier is not None else -1)
                self._ot_study.tell(ot, state=optuna.trial.TrialState.PRUNED)
                del self._ot_trials[trial_id]
            log.warning("%d repeat suggestions in a row: the space is exhausted for this "
                        "sampler", MAX_REDRAWS)
            return Searcher.FINISHED  # type: ignore[return-value]

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            self._pending.pop(trial_id, None)
            ot = self._ot_trials.get(trial_id)
            if result and _USER_ERROR in result and trial_id not in self._completed_trials:
                if ot is not None:
                    ot.set_user_attr("error", result[_USER_ERROR][:500])
                    assert self._ot_study is not None  # it made ``ot``
                    self._ot_study.tell(ot, state=optuna.trial.TrialState.FAIL)
                self._completed_trials.add(trial_id)
                return
            if ot is not None and result and _ATTRS in result:
                for k, v in json.loads(result[_ATTRS]).items():
                    ot.set_user_attr(k, v)
                store_constraints(ot.storage, _trial_id_of(ot), json.loads(result[_CONS]))
            if result and result.get(_INVALID):
                ot = self._ot_trials.pop(trial_id, None)
                if ot is not None and self._ot_study is not None:
                    ot.set_user_attr("invalid", result[_INVALID])
                    self._ot_study.tell(ot, state=optuna.trial.TrialState.FAIL)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

    return JointOptunaSearch


def init_ray(study: Study, *, quiet: bool = False) -> None:
    """Join ``search.ray.address`` / RAY_ADDRESS if set, else start Ray on this machine.

    ``quiet`` keeps Ray's and Tune's INFO lines (connecting, result files written) off stderr,
    where a failed run's one error line must stand alone.
    """
    import ray

    if quiet:
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    level = logging.WARNING if quiet else logging.INFO
    address = study.search.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=level)
    else:
        # address="local": a new Ray on this machine, as documented, even when a `ray start`
        # cluster runs here too (ray.init would join it and then refuse num_cpus).
        # worker_niceness 0: Ray runs its workers at nice 15 by default, so on a machine that
        # is busy with anything else (a laptop, CI) the trials all but stop: under two busy
        # loops on 2 cores a test search took 14x its quiet time. Trials are the search's
        # work, so they run at the user's priority.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, logging_level=level,
                 _system_config={"worker_niceness": 0})


def _trainable(config: dict[str, Any], study: Study, supernet: Any) -> None:
    import dataclasses

    from ray import tune

    if not study.evaluation.threads:  # keep to the CPUs Ray gave this trial
        cpus = max(1, int(study.search.ray.cpus_per_trial))
        study = dataclasses.replace(study, evaluation=dataclasses.replace(study.evaluation,
                                                                          threads=cpus))
    try:
        cfg = study.space.config_from_params(config)
        out = run_trial(study, cfg, supernet=supernet)
    except InvalidConfig as e:  # reported, then failed by the searcher: no made-up values
        tune.report({_INVALID: str(e), **{o.key: 0.0 for o in study.search.objectives}})
        return
    except UserError as e:
        # A worker's configuration (an environment variable set on the driver only, a path
        # missing on this node) fails every trial the same way: report it instead of raising,
        # so Ray neither retries it (max_failures) nor prints a traceback per attempt.
        import ray

        node = ray.util.get_node_ip_address()
        # Tune insists on the objective keys in every result; the searcher reads the error
        # first and fails the trial (these placeholders are never stored).
        tune.report({**{o.key: 0.0 for o in study.search.objectives},
                     _USER_ERROR: f"{e} (on Ray worker node {node})"})
        return
    result: dict[str, Any] = {o.key: v for o, v in zip(study.search.objectives, out.values,
                                                      strict=True)}
    result[_ATTRS] = json.dumps(out.user_attrs, default=float)
    result[_CONS] = json.dumps(out.constraints)
    tune.report(result)


def run_ray(study: Study, *, n_trials: int | None = None, progress: bool = True,
            orphans: tuple[str, ...] = ()) -> optuna.Study:
    """Run or resume the study with Ray Tune until ``n_trials`` trials are complete."""
    from ray import tune

    spec = study.search
    target = n_trials or spec.n_trials
    check_storage(study)  # reachable? (creates nothing; before torch loads)
    supernet = study.load_supernet()
    study.data()  # a bad dataset is one line now, before the storage is written
    storage = open_storage(study)
    sampler = make_sampler(spec, n_objectives=len(spec.objectives), space=study.space)
    ostudy = open_study(study, storage, sampler=sampler)  # checks objectives, queues baseline
    sampler = make_sampler(spec, n_objectives=len(spec.objectives),
                           seed=worker_seed(ostudy, spec.seed), space=study.space,
                           storage=storage)
    recover_orphans(ostudy, storage, also=orphans, grace=spec.grace_period)
    requeue_anchors(ostudy, study)
    remaining = max(target - count_complete(ostudy), pending_anchors(ostudy))
    if remaining <= 0:
        return ostudy
    init_ray(study, quiet=not progress)
    # OptunaSearch asks and tells outside Study.optimize, where Optuna's heartbeat (kept for
    # the Optuna backend's workers) does nothing; its warning says only that.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
    searcher = _searcher_class()(
        space=_Define(study), metric=[o.key for o in spec.objectives],
        mode=["max" if o.direction == "maximize" else "min" for o in spec.objectives],
        sampler=sampler, storage=storage, study_name=spec.study_name, owner=worker_id(),
        study=study)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, study=study, supernet=supernet),
        {"cpu": spec.ray.cpus_per_trial})
    results = Path(study.output) / "ray_results"
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                    max_concurrent_trials=spec.ray.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=spec.study_name, storage_path=str(results), verbose=1 if progress else 0,
            stop=_stopper(),
            failure_config=tune.FailureConfig(max_failures=spec.ray.max_failures)),
    )
    done_before = count_complete(ostudy)
    grid = tuner.fit()
    ostudy = optuna.load_study(study_name=spec.study_name, storage=storage)
    # by index: ResultGrid declares __len__ and __getitem__ but no __iter__
    outcomes = [(grid[i].metrics or {}, grid[i].error) for i in range(len(grid))]
    for metrics, _ in outcomes:
        if _USER_ERROR in metrics:
            raise UserError(metrics[_USER_ERROR])
    if outcomes and count_complete(ostudy) == done_before:
        errors = [e for _, e in outcomes if e is not None]
        first = (f"the first with {type(errors[0]).__name__}: "
                 f"{clip(str(errors[0]) or '(no message)', 300)}") if errors else "none finished"
        raise SearchFailed(f"{study.path}: no trial completed on the Ray cluster: "
                           f"{len(errors)} of {len(outcomes)} failed, {first}")
    return ostudy


def _stopper() -> Any:
    from ray import tune

    class StopOnUserError(tune.Stopper):  # type: ignore[misc]
        """Stops the whole run once a trial reports a mistake in the study's input."""

        def __init__(self) -> None:
            self.stopped = False

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            if _USER_ERROR in result:
                self.stopped = True
            return self.stopped

        def stop_all(self) -> bool:
            return self.stopped

    return StopOnUserError()


class _Define:
    """Define-by-run space for OptunaSearch (a class, not a closure: Ray pickles its searcher)."""

    def __init__(self, study: Study) -> None:
        self.study = study

    def __call__(self, trial: optuna.Trial) -> None:
        self.study.space.suggest(trial)
