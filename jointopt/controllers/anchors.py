"""The study's anchors: the baseline (``space.max_config``) and the seed configs.

They are queued once, when the study is created. A trial of theirs that fails (a worker
without the study's configuration, a killed node) would otherwise never run again, and a study
without an evaluated baseline has no Pareto summary or report, ever.
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import TrialState

from jointopt.study import Study

__all__ = ["requeue_anchors", "pending_anchors"]

log = logging.getLogger(__name__)


def _fixed_params(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(t.system_attrs.get("fixed_params") or t.params)


def requeue_anchors(ostudy: optuna.Study, study: Study) -> list[str]:
    """Queue the baseline and every seed config again unless a trial of it is complete,
    waiting, running or pruned as a repeat; returns what was queued (``"baseline"`` and config
    keys)."""
    from jointopt.space import JointConfig

    live = (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)
    # A seed config pruned as a repeat (another trial measured the same config) is done too:
    # queueing it again would only prune it again, once per resume.
    trials = [t for t in ostudy.get_trials(deepcopy=False) if t.state in live
              or (t.state == TrialState.PRUNED and "repeat_of" in t.user_attrs)]
    space = study.space
    queued = []
    if not any(t.user_attrs.get("baseline") for t in trials):
        ostudy.enqueue_trial(space.params_from_config(space.max_config),
                             user_attrs={"baseline": True}, skip_if_exists=False)
        queued.append("baseline")
    for c in study.search.seed_configs:
        params = space.params_from_config(JointConfig.from_dict(c))
        if not any(_fixed_params(t) == params for t in trials):
            ostudy.enqueue_trial(params, user_attrs={"seed_config": True},
                                 skip_if_exists=False)
            queued.append(JointConfig.from_dict(c).key())
    if queued:
        log.warning("queued again (no complete, waiting or running trial): %s",
                    ", ".join(queued))
    return queued


def pending_anchors(ostudy: optuna.Study) -> int:
    """Baseline and seed-config trials waiting in the queue. A search runs them even when
    ``n_trials`` are already complete: without its baseline a study has no summary."""
    return sum(1 for t in ostudy.get_trials(deepcopy=False, states=(TrialState.WAITING,))
               if t.user_attrs.get("baseline") or t.user_attrs.get("seed_config"))
