"""Sampler registry: names in the study's ``search.sampler`` map to Optuna samplers.

Add your own with::

    @register_sampler("my-sampler")
    def _make(*, seed, n_objectives, space, **options) -> optuna.samplers.BaseSampler:
        ...

``space`` is the study's :class:`~jointopt.space.SearchSpace` (None while the study file is
being checked); ``options`` are the other keys of ``search.sampler``. A factory that also names a
``storage`` keyword gets the study's Optuna storage when a search runs (None otherwise): Optuna
gives a sampler no public handle on it, and ``staged`` records each trial's stage there.

Built in: ``axiswise`` (jointopt's joint strategy, :mod:`jointopt.controllers.axiswise`),
``staged`` (the seed paper's architecture-then-tokens-then-precision selection,
:mod:`jointopt.controllers.staged`), ``nsga2``, ``nsga3``, ``tpe``, ``gp`` and ``random``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from jointopt.controllers.spec import SearchSpec

__all__ = ["register_sampler", "make_sampler", "sampler_names", "check_sampler_options"]

SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
_SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    def deco(fn: SamplerFactory) -> SamplerFactory:
        _SAMPLERS[name] = fn
        return fn

    return deco


def sampler_names() -> list[str]:
    return sorted(_SAMPLERS)


def make_sampler(spec: SearchSpec, *, n_objectives: int, seed: int | None = None,
                 space: Any = None, storage: BaseStorage | None = None
                 ) -> optuna.samplers.BaseSampler:
    """Build the study's sampler (seeded with ``seed``, default the study's); unknown options
    raise TypeError naming them. ``storage`` (the study's) goes to a factory that takes it."""
    factory = _SAMPLERS[spec.sampler.name]
    extra = {"storage": storage} if _takes_storage(factory) else {}
    return factory(seed=spec.seed if seed is None else seed, n_objectives=n_objectives,
                   space=space, **dict(spec.sampler.options), **extra)


def _takes_storage(factory: SamplerFactory) -> bool:
    param = inspect.signature(factory).parameters.get("storage")
    return param is not None and param.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD)


def check_sampler_options(name: str, options: dict[str, Any]) -> None:
    """Raise TypeError if sampler ``name`` does not take ``options``."""
    if "storage" in options:
        raise TypeError("'storage' is not a sampler option (the sampler gets the study's)")
    inspect.signature(_SAMPLERS[name]).bind(seed=0, n_objectives=1, space=None, **options)


@register_sampler("axiswise")
def _axiswise(*, seed: int, n_objectives: int, space: Any = None, n_startup: int = 6,
              n_candidates: int = 96, arch_share: float = 0.6, global_share: float = 0.25,
              explore: float = 1.0, arch_front: float = 0.0, warm_start: bool = False
              ) -> optuna.samplers.BaseSampler:
    from jointopt.controllers.axiswise import AxiswiseSampler

    if space is None:
        raise ValueError("the axiswise sampler needs the study's search space")
    return AxiswiseSampler(space=space, seed=seed, n_startup=n_startup,
                           n_candidates=n_candidates, arch_share=arch_share,
                           global_share=global_share, explore=explore, arch_front=arch_front,
                           warm_start=warm_start)


@register_sampler("staged")
def _staged(*, seed: int, n_objectives: int, space: Any = None, n_trials: int = 40,
            n_startup: int = 6, n_candidates: int = 96, explore: float = 1.0,
            warm_start: bool = False, storage: BaseStorage | None = None
            ) -> optuna.samplers.BaseSampler:
    from jointopt.controllers.staged import StagedSampler

    if space is None:
        raise ValueError("the staged sampler needs the study's search space")
    return StagedSampler(space=space, n_trials=n_trials, seed=seed, n_startup=n_startup,
                         n_candidates=n_candidates, explore=explore, warm_start=warm_start,
                         storage=storage)


class _PicklableGA:
    """Pickling for Optuna's genetic samplers. From Optuna 5.1 they hold a ``threading.Lock``
    (``_thread_lock``), which pickle cannot copy, and Ray Tune pickles its searcher, sampler
    included, into the experiment state: the lock is left out and made anew on unpickling."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


# The class names stay Optuna's: a genetic sampler keys its generation cache in the study's
# system attributes by its class name, so a study started with Optuna's own class resumes.
class NSGAIISampler(_PicklableGA, optuna.samplers.NSGAIISampler):
    """:class:`optuna.samplers.NSGAIISampler` that pickles (see :class:`_PicklableGA`)."""


class NSGAIIISampler(_PicklableGA, optuna.samplers.NSGAIIISampler):
    """:class:`optuna.samplers.NSGAIIISampler` that pickles (see :class:`_PicklableGA`)."""


@register_sampler("nsga2")
def _nsga2(*, seed: int, n_objectives: int, space: Any = None, population_size: int = 10,
           **kw: Any
           ) -> optuna.samplers.BaseSampler:
    # Optuna's default population of 50 never reaches a second generation in a 40-trial search;
    # 10 gives four generations.
    return NSGAIISampler(population_size=population_size, seed=seed, **kw)


@register_sampler("nsga3")
def _nsga3(*, seed: int, n_objectives: int, space: Any = None, population_size: int = 10,
           **kw: Any
           ) -> optuna.samplers.BaseSampler:
    return NSGAIIISampler(population_size=population_size, seed=seed, **kw)


@register_sampler("tpe")
def _tpe(*, seed: int, n_objectives: int, space: Any = None, n_startup_trials: int = 10,
         **kw: Any
         ) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                      multivariate=True, **kw)


@register_sampler("gp")
def _gp(*, seed: int, n_objectives: int, space: Any = None, n_startup_trials: int = 10,
        **kw: Any
        ) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials, **kw)


@register_sampler("random")
def _random(*, seed: int, n_objectives: int, space: Any = None, **kw: Any
            ) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **kw)
