"""What one trial does, shared by both backends: a config in, values + attrs + constraints out.

A search never stores a trial with made-up values: a config the space rejects (it cannot draw
one, but a user sampler might) fails the trial, and a config evaluated before (a repeat
suggestion) is pruned without being measured, so ``n_trials`` counts distinct configs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from jointopt.errors import UserError
from jointopt.pareto import METRIC_KEYS, Objective
from jointopt.space import JointConfig
from jointopt.study import Study

__all__ = ["TrialOutcome", "run_trial", "suggest_config", "find_repeat", "trial_record",
           "study_records", "objectives_of",
           "store_constraints", "InvalidConfig", "CONSTRAINTS_ATTR"]

#: optuna-dashboard reads a trial's constraints from this system attribute (a list, in the
#: order of the study's constraints); Optuna 5 reads it too.
CONSTRAINTS_ATTR = "constraints"


class InvalidConfig(RuntimeError):
    """The space rejected a suggested config: the trial fails (no values are stored)."""


@dataclass
class TrialOutcome:
    values: list[float]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    constraints: list[float] = field(default_factory=list)


def suggest_config(trial: optuna.Trial, study: Study) -> JointConfig:
    """Draw the trial's config (define-by-run: only the parameters of existing layers) and
    record it on the trial."""
    cfg = study.space.suggest(trial)
    trial.set_user_attr("config", cfg.to_dict())
    trial.set_user_attr("config_key", cfg.key())
    return cfg


def run_trial(study: Study, cfg: JointConfig, *, supernet: Any = None) -> TrialOutcome:
    """Evaluate ``cfg``; raises :class:`InvalidConfig` if the space rejects it."""
    spec = study.search
    try:
        study.space.validate(cfg)
    except UserError as e:
        raise InvalidConfig(str(e)) from None
    from jointopt.evaluation import evaluate  # torch loads with the first trial, not before

    metrics = evaluate(study, cfg, supernet=supernet).to_dict()
    attrs: dict[str, Any] = {"config": cfg.to_dict(), "config_key": cfg.key(), **metrics}
    cons = [c.violation(metrics) for c in spec.constraints]
    return TrialOutcome([float(metrics[o.key]) for o in spec.objectives], attrs, cons)


def store_constraints(storage: Any, trial_id: int, values: list[float]) -> None:
    if values:
        storage.set_trial_system_attr(trial_id, CONSTRAINTS_ATTR, [float(v) for v in values])


def find_repeat(ostudy: optuna.Study) -> Callable[[str], int | None]:
    """A lookup of completed trials by config key: the number of the trial that measured it.

    A trial whose latency was taken on contended cores (``latency_contended``) does not count:
    its config is measured again.
    """

    def lookup(key: str) -> int | None:
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("config_key") == key and "accuracy" in t.user_attrs \
                    and not t.user_attrs.get("latency_contended"):
                return t.number
        return None

    return lookup


def trial_record(t: FrozenTrial) -> dict[str, Any] | None:
    """A finished trial as the record the Pareto and report code read, or None."""
    if t.state != TrialState.COMPLETE or "config" not in t.user_attrs:
        return None
    metrics = {k: t.user_attrs[k] for k in (*METRIC_KEYS, "latency_contended", "precision",
                                            "energy_b1_mj", "balanced_accuracy")
               if k in t.user_attrs}
    feasible = all(v <= 0 for v in t.constraints.values())
    return {"number": t.number, "config": t.user_attrs["config"], "metrics": metrics,
            "feasible": feasible, "baseline": bool(t.user_attrs.get("baseline")),
            "valid": True}


def study_records(study: Study) -> tuple[list[dict[str, Any]], dict[str, Any] | None,
                                         optuna.Study]:
    """(records of finished trials, the baseline record or None, the Optuna study), read
    without creating anything in the storage."""
    from jointopt.controllers.storage import open_storage, open_study

    ostudy = open_study(study, open_storage(study, create=False), create=False)
    # A repeat reuses an earlier trial's measurement; listing it again would only duplicate
    # that trial on the front.
    records = [r for t in ostudy.get_trials(deepcopy=False)
               if (r := trial_record(t)) and "repeat_of" not in t.user_attrs]
    base = next((r for r in records if r["baseline"] and r["valid"]), None)
    return records, base, ostudy


def objectives_of(study: Study) -> list[Objective]:
    return list(study.search.objectives)
