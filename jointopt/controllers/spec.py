"""The ``search:`` section of a study: objectives, constraints, sampler, budget, backend, storage.

Constraint expressions are parsed by a regular expression (``metric <= number``); nothing the
user writes is ever passed to ``eval``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jointopt._yaml import check_keys, want
from jointopt.errors import clip, field_error
from jointopt.pareto import Objective

__all__ = ["SearchSpec", "Constraint", "NUMERIC_METRICS", "parse_search", "check_sampler"]

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


@dataclass(frozen=True)
class SearchSpec:
    """How the study searches. Defaults give the quickstart's NSGA-II search."""

    study_name: str = ""
    storage: str | None = None
    objectives: tuple[Objective, ...] = tuple(Objective(k, d)
                                                   for k, d in DEFAULT_OBJECTIVES)
    constraints: tuple[Constraint, ...] = ()
    sampler: str = "nsga2"
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    n_trials: int = 40
    timeout: float | None = None
    backend: str = "optuna"
    n_jobs: int = 1
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 3
    storage_retry_seconds: float = 60.0
    ray_address: str | None = None
    max_concurrent_trials: int = 2
    cpus_per_trial: float = 1.0
    max_failures: int = 2
    #: Configs queued right after the baseline (a warm start). Without them a genetic sampler
    #: can lose a whole axis early: integer activations are invalid with float weights, so
    #: NSGA-II's first random generation penalised a_bits=8 and never sampled it again.
    seed_configs: tuple[dict[str, Any], ...] = ()


_TOP = ("study_name", "storage", "objectives", "constraints", "sampler", "n_trials", "timeout",
        "backend", "n_jobs", "heartbeat_interval", "grace_period", "max_retry",
        "storage_retry_seconds", "ray", "seed_configs")
_STUDY_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,100}")
_RAY = ("address", "max_concurrent_trials", "cpus_per_trial", "max_failures")


def parse_search(data: Any, *, source: str, default_name: str, seed: int) -> SearchSpec:
    """Parse the ``search:`` mapping; every error names the file, the key and the value."""
    from jointopt.controllers.samplers import sampler_names

    data = {} if data is None else data
    check_keys(data, _TOP, source=source, prefix="search")
    kw: dict[str, Any] = {"study_name": default_name, "seed": seed}
    if "study_name" in data:
        kw["study_name"] = want(data["study_name"], str, source, "search.study_name")
        if not _STUDY_NAME.fullmatch(kw["study_name"]) or kw["study_name"] in (".", ".."):
            # Ray Tune makes it a folder under <output>/ray_results.
            raise field_error(source, "search.study_name", kw["study_name"],
                              "must be 1-100 characters without '/', '\\' or control "
                              "characters, and not '.' or '..'")
    if data.get("storage") is not None:
        kw["storage"] = want(data["storage"], str, source, "search.storage")
    if "objectives" in data:
        objs = data["objectives"]
        if not isinstance(objs, Mapping) or not objs:
            raise field_error(source, "search.objectives", objs,
                              "must map metric keys to maximize/minimize")
        parsed = []
        for k, d in objs.items():
            if k not in NUMERIC_METRICS:
                raise field_error(source, f"search.objectives.{k}", d,
                                  f"unknown metric {k!r} (metrics: {', '.join(NUMERIC_METRICS)})")
            if d not in ("maximize", "minimize"):
                raise field_error(source, f"search.objectives.{k}", d,
                                  "direction must be maximize or minimize")
            parsed.append(Objective(k, d))
        kw["objectives"] = tuple(parsed)
    cons = data.get("constraints") or []
    if not isinstance(cons, list):
        raise field_error(source, "search.constraints", cons, "must be a list of expressions")
    kw["constraints"] = tuple(Constraint.parse(c, source=source, where=f"search.constraints[{i}]")
                              for i, c in enumerate(cons))
    sampler = data.get("sampler", {"name": "nsga2"})
    if isinstance(sampler, str):
        sampler = {"name": sampler}
    if not isinstance(sampler, Mapping) or "name" not in sampler:
        raise field_error(source, "search.sampler", sampler, "must be a name or {name: ...}")
    name = want(sampler["name"], str, source, "search.sampler.name")
    if name not in sampler_names():
        raise field_error(source, "search.sampler.name", name,
                          f"unknown sampler (registered: {', '.join(sampler_names())})")
    kw["sampler"] = name
    opts = {k: v for k, v in sampler.items() if k not in ("name", "seed")}
    for k, v in opts.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise field_error(source, f"search.sampler.{k}", v, "must be a finite number")
    kw["sampler_options"] = opts
    if "seed" in sampler:
        kw["seed"] = want(sampler["seed"], int, source, "search.sampler.seed")
    for key, typ in (("n_trials", int), ("n_jobs", int), ("heartbeat_interval", int),
                     ("grace_period", int), ("max_retry", int),
                     ("storage_retry_seconds", float)):
        if key in data:
            v = want(data[key], typ, source, f"search.{key}")
            if v <= 0 and key != "max_retry":
                raise field_error(source, f"search.{key}", v, "must be > 0")
            kw[key] = v
    if data.get("timeout") is not None:
        kw["timeout"] = want(data["timeout"], float, source, "search.timeout")
        if kw["timeout"] <= 0:
            raise field_error(source, "search.timeout", kw["timeout"],
                              "must be > 0 seconds (null: no time limit)")
    if "backend" in data:
        b = want(data["backend"], str, source, "search.backend")
        if b not in ("optuna", "ray"):
            raise field_error(source, "search.backend", b, "must be optuna or ray")
        kw["backend"] = b
    ray = data.get("ray") or {}
    check_keys(ray, _RAY, source=source, prefix="search.ray")
    if ray.get("address") is not None:
        kw["ray_address"] = want(ray["address"], str, source, "search.ray.address")
    for key, typ, least in (("max_concurrent_trials", int, 1), ("cpus_per_trial", float, 0),
                            ("max_failures", int, 0)):
        if key in ray:
            kw[key] = want(ray[key], typ, source, f"search.ray.{key}")
            if kw[key] < least or (key == "cpus_per_trial" and kw[key] <= 0):
                raise field_error(source, f"search.ray.{key}", kw[key],
                                  "must be > 0" if key == "cpus_per_trial" else
                                  f"must be >= {least}")
    seeds = data.get("seed_configs") or []
    if not isinstance(seeds, list):
        raise field_error(source, "search.seed_configs", seeds, "must be a list of configs")
    from jointopt.space import JointConfig

    kw["seed_configs"] = tuple(
        JointConfig.from_dict(c, source=f"{source}: search.seed_configs[{i}]").to_dict()
        for i, c in enumerate(seeds))
    spec = SearchSpec(**kw)
    try:
        from jointopt.controllers.samplers import check_sampler_options

        check_sampler_options(spec.sampler, dict(spec.sampler_options))
    except (TypeError, ValueError) as e:  # an unknown option, or one Optuna rejects
        raise field_error(source, "search.sampler", dict(sampler), clip(str(e))) from None
    return spec


def check_sampler(spec: SearchSpec, space: Any, source: str) -> None:
    """Build the study's sampler once, so a bad option value is a one-line error up front."""
    from jointopt.controllers.samplers import make_sampler

    try:
        make_sampler(spec, n_objectives=len(spec.objectives), space=space)
    except (TypeError, ValueError) as e:
        raise field_error(source, "search.sampler", {"name": spec.sampler, **spec.sampler_options},
                          clip(str(e))) from None
