"""What one trial does, shared by both backends: params in, values + attrs + constraints out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from jointopt.errors import UserError
from jointopt.evaluation import METRIC_KEYS, evaluate
from jointopt.study import Study

__all__ = ["TrialOutcome", "run_trial", "suggest_params", "find_repeat", "trial_record",
           "VALID_CONSTRAINT"]

VALID_CONSTRAINT = "valid_config"


@dataclass
class TrialOutcome:
    values: list[float]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)


def suggest_params(trial: optuna.Trial, study: Study) -> dict[str, Any]:
    """One categorical parameter per scalar field and per layer index of per-layer fields."""
    space = study.space
    return {p: trial.suggest_categorical(p, list(space.param_choices(p)))
            for p in space.param_names()}


def _worst(direction: str) -> float:
    return 0.0 if direction == "maximize" else math.inf


def run_trial(study: Study, params: Mapping[str, Any], *, supernet: Any = None,
              repeat: Callable[[str], Mapping[str, Any] | None] | None = None) -> TrialOutcome:
    """Evaluate the config named by ``params``.

    A config that validation rejects is an infeasible trial (its ``valid_config`` constraint is
    violated), not a crash. A config evaluated before (``repeat(key)`` finds its metrics) is
    not measured again.
    """
    spec = study.search
    space = study.space
    cfg = space.config_from_params(params)
    attrs: dict[str, Any] = {"config": cfg.to_dict(), "config_key": cfg.key()}
    try:
        space.validate(cfg)
    except UserError as e:
        attrs["invalid"] = str(e)
        cons = {c.name: 1.0 for c in spec.constraints}
        cons[VALID_CONSTRAINT] = 1.0
        return TrialOutcome([_worst(o.direction) for o in spec.objectives], attrs, cons)
    earlier = repeat(cfg.key()) if repeat is not None else None
    if earlier is not None:
        metrics = {k: earlier[k] for k in earlier if k in METRIC_KEYS or k in _EXTRA}
        attrs["repeat_of"] = earlier.get("_number")
    else:
        metrics = evaluate(study, cfg, supernet=supernet).to_dict()
    attrs.update(metrics)
    cons = {c.name: c.violation(metrics) for c in spec.constraints}
    cons[VALID_CONSTRAINT] = 0.0
    return TrialOutcome([float(metrics[o.key]) for o in spec.objectives], attrs, cons)


_EXTRA = ("eval_seconds", "latency_cached", "split")


def find_repeat(ostudy: optuna.Study) -> Callable[[str], Mapping[str, Any] | None]:
    """A lookup of completed trials by config key (so a repeat is not measured again).

    A trial whose latency was taken on contended cores (``latency_contended``) is not reused:
    its repeat measures again.
    """

    def lookup(key: str) -> Mapping[str, Any] | None:
        for t in ostudy.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("config_key") == key and "accuracy" in t.user_attrs \
                    and not t.user_attrs.get("latency_contended"):
                return {**t.user_attrs, "_number": t.number}
        return None

    return lookup


def trial_record(t: FrozenTrial) -> dict[str, Any] | None:
    """A finished trial as the record the Pareto and report code read, or None."""
    if t.state != TrialState.COMPLETE or "config" not in t.user_attrs:
        return None
    valid = "invalid" not in t.user_attrs
    metrics = {k: t.user_attrs[k] for k in (*METRIC_KEYS, "latency_contended")
               if k in t.user_attrs}
    feasible = valid and all(v <= 0 for v in t.constraints.values())
    return {"number": t.number, "config": t.user_attrs["config"], "metrics": metrics,
            "feasible": feasible, "baseline": bool(t.user_attrs.get("baseline")),
            "valid": valid}
