"""The ``search:`` section of a study: objectives, constraints, sampler, budget, backend, storage.

Constraint expressions are parsed by a regular expression (``metric <= number``); nothing the
user writes is ever passed to ``eval``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jointopt.errors import clip, field_error
from jointopt.pareto import Objective
from jointopt.schema import Where, setting, want

__all__ = ["SearchSpec", "SamplerSpec", "RaySpec", "Constraint", "NUMERIC_METRICS",
           "check_sampler"]

#: Metric keys an objective or a constraint may name.
NUMERIC_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "params", "macs", "bitops",
                                    "model_bytes", "latency_ms", "throughput_ips", "energy_mj")
DEFAULT_OBJECTIVES = (("accuracy", "maximize"), ("latency_ms", "minimize"),
                      ("energy_mj", "minimize"))

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*"
                         r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``key op bound``; :meth:`violation` is <= 0 when satisfied (Optuna's convention)."""

    key: str
    op: str
    bound: float
    text: str

    def violation(self, metrics: Mapping[str, Any]) -> float:
        v = float(metrics[self.key])
        return v - self.bound if self.op in ("<=", "<") else self.bound - v

    @property
    def name(self) -> str:
        return f"{self.key}{self.op}{self.bound:g}"

    @classmethod
    def parse(cls, text: Any, *, source: str, where: str) -> Constraint:
        m = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if m is None:
            raise field_error(source, where, text,
                              "must read 'metric <= number' (or >=, <, >), e.g. 'accuracy >= 0.9'")
        key, op, bound = m.group(1), m.group(2), float(m.group(3))
        if key not in NUMERIC_METRICS:
            raise field_error(source, where, text, f"constrains unknown metric {key!r} "
                              f"(metrics: {', '.join(NUMERIC_METRICS)})")
        return cls(key, op, bound, text)


def _objectives(value: Any, where: Where) -> tuple[Objective, ...]:
    if not isinstance(value, Mapping) or not value:
        raise where.error(value, "must map metric keys to maximize/minimize")
    parsed = []
    for k, d in value.items():
        if k not in NUMERIC_METRICS:
            raise where.at(str(k)).error(
                d, f"unknown metric {k!r} (metrics: {', '.join(NUMERIC_METRICS)})")
        if d not in ("maximize", "minimize"):
            raise where.at(str(k)).error(d, "direction must be maximize or minimize")
        parsed.append(Objective(k, d))
    return tuple(parsed)


def _constraints(value: Any, where: Where) -> tuple[Constraint, ...]:
    value = value or []
    if not isinstance(value, list):
        raise where.error(value, "must be a list of expressions")
    return tuple(Constraint.parse(c, source=str(where.source), where=f"{where.key}[{i}]")
                 for i, c in enumerate(value))


def _seed_configs(value: Any, where: Where) -> tuple[dict[str, Any], ...]:
    from jointopt.space import JointConfig

    value = value or []
    if not isinstance(value, list):
        raise where.error(value, "must be a list of configs")
    return tuple(JointConfig.from_dict(c, source=f"{where.source}: {where.key}[{i}]").to_dict()
                 for i, c in enumerate(value))


def _study_name(value: Any, where: Where) -> str:
    name: str = want(value, str, where.source, where.key)
    if not _STUDY_NAME.fullmatch(name) or name in (".", ".."):
        # Ray Tune makes it a folder under <output>/ray_results.
        raise where.error(name, "must be 1-100 characters without '/', '\\' or control "
                          "characters, and not '.' or '..'")
    return name


def _sampler_name(value: Any, where: Where) -> Any:
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise where.error(value, "must be a name or {name: ...}")
    return value


@dataclass(frozen=True)
class SamplerSpec:
    """``search.sampler``: a registered sampler's name (``nsga2``) or ``{name, seed, options}``."""

    name: str = setting(missing="is required (a registered sampler's name)")
    seed: int | None = None  # default: the study's seed
    options: Mapping[str, Any] = setting(factory=dict, rest=True)  # every other key

    def check(self, source: str, prefix: str) -> None:
        from jointopt.controllers.samplers import check_sampler_options, sampler_names

        if self.name not in sampler_names():
            raise field_error(source, f"{prefix}.name", self.name,
                              f"unknown sampler (registered: {', '.join(sampler_names())})")
        for k, v in self.options.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise field_error(source, f"{prefix}.{k}", v, "must be a finite number")
        try:
            check_sampler_options(self.name, dict(self.options))
        except (TypeError, ValueError) as e:  # an unknown option, or one Optuna rejects
            raise field_error(source, prefix, self.as_dict(), clip(str(e))) from None

    def as_dict(self) -> dict[str, Any]:
        seed = {} if self.seed is None else {"seed": self.seed}
        return {"name": self.name, **seed, **self.options}


@dataclass(frozen=True)
class RaySpec:
    """``search.ray``: where and how wide the Ray backend runs."""

    address: str | None = None
    max_concurrent_trials: int = setting(2, ge=1)
    cpus_per_trial: float = setting(1.0, gt=0)
    max_failures: int = setting(2, ge=0)


@dataclass(frozen=True)
class SearchSpec:
    """How the study searches. Defaults give the quickstart's NSGA-II search."""

    study_name: str = setting("", parse=_study_name)  # default: the study's name
    storage: str | None = None
    objectives: tuple[Objective, ...] = setting(
        tuple(Objective(k, d) for k, d in DEFAULT_OBJECTIVES), parse=_objectives)
    constraints: tuple[Constraint, ...] = setting((), parse=_constraints)
    sampler: SamplerSpec = setting(factory=lambda: SamplerSpec("nsga2"), pre=_sampler_name)
    #: The sampler's seed: ``search.sampler.seed``, else the study's seed (set when the study
    #: is read).
    seed: int = setting(0, yaml=False)
    n_trials: int = setting(40, gt=0)
    timeout: float | None = setting(None, gt=0, why="must be > 0 seconds (null: no time limit)")
    backend: str = setting("optuna", choices=("optuna", "ray"))
    n_jobs: int = setting(1, gt=0)
    heartbeat_interval: int = setting(10, gt=0)
    grace_period: int = setting(30, gt=0)
    max_retry: int = setting(3, ge=0)
    storage_retry_seconds: float = setting(60.0, gt=0)
    ray: RaySpec = setting(factory=RaySpec)
    #: Configs queued right after the baseline (a warm start). Without them a genetic sampler
    #: can lose a whole axis early: integer activations are invalid with float weights, so
    #: NSGA-II's first random generation penalised a_bits=8 and never sampled it again.
    seed_configs: tuple[dict[str, Any], ...] = setting((), parse=_seed_configs)


_STUDY_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,100}")


def check_sampler(spec: SearchSpec, space: Any, source: str) -> None:
    """Build the study's sampler once, so a bad option value is a one-line error up front."""
    from jointopt.controllers.samplers import make_sampler

    try:
        make_sampler(spec, n_objectives=len(spec.objectives), space=space)
    except (TypeError, ValueError) as e:
        raise field_error(source, "search.sampler", spec.sampler.as_dict(),
                          clip(str(e))) from None
