"""``staged``: the seed paper's selection in stages, as a sampler (a baseline for the joint one).

Nguyen et al. (arXiv 2605.01742) select in stages: an AutoFormer architecture search, then
token merging on the chosen architectures, then a lower precision. Here the same budget
(``n_trials``) is split 50/25/25:

1. architecture: float32, no merging, moves on the architecture axes only;
2. tokens: merging steps on the members of the front so far;
3. precision: precision changes on the members of the front so far.

Each stage uses the axiswise machinery (front neighbours, fitted surrogates, predicted
hypervolume gain) restricted to its axis, so the comparison with ``axiswise`` is about the
order of the axes, not the quality of the proposals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from jointopt.controllers.axiswise import AxiswiseSampler
from jointopt.controllers.storage import trial_id
from jointopt.space import JointConfig, SearchSpace

__all__ = ["StagedSampler", "STAGE_SHARES"]

STAGE_SHARES = (0.5, 0.25, 0.25)


class StagedSampler(AxiswiseSampler):
    """Architecture, then tokens, then precision; ``n_trials`` is the whole budget."""

    def __init__(self, *, space: SearchSpace, n_trials: int, seed: int | None = None,
                 n_startup: int = 6, n_candidates: int = 96, explore: float = 1.0,
                 warm_start: bool = False, storage: BaseStorage | None = None) -> None:
        if n_trials < 3:
            raise ValueError(f"n_trials must be at least 3 (one per stage), got {n_trials}")
        super().__init__(space=space, seed=seed, n_startup=n_startup,
                         n_candidates=n_candidates, arch_share=1.0, global_share=0.0,
                         explore=explore, warm_start=warm_start)
        self._ends = (round(STAGE_SHARES[0] * n_trials),
                      round((STAGE_SHARES[0] + STAGE_SHARES[1]) * n_trials))
        self._stage = 1
        #: The study's storage, where each trial's stage is recorded (system attr
        #: ``jointopt:stage``); Optuna gives a sampler no public handle on it, so without one
        #: the stages are not recorded.
        self.storage = storage

    def stage_of(self, done: int) -> int:
        return 1 if done < self._ends[0] else 2 if done < self._ends[1] else 3

    def propose(self, study: optuna.Study, number: int) -> JointConfig:
        done = sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.COMPLETE)
        self._stage = self.stage_of(done)
        return super().propose(study, number)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        if self.storage is not None:
            # ``study`` may be a pruner's filtered view of the study; it keeps ``study_name``.
            self.storage.set_trial_system_attr(
                trial_id(self.storage, study.study_name, trial.number), "jointopt:stage",
                self._stage)

    def _startup(self, rng: np.random.Generator, k: int, taken: set[Any]) -> JointConfig:
        if k == 0 and self._warm_start:  # the same warm start as the joint sampler's
            cfg = self._smallest()
            if cfg.key() not in taken:
                return cfg
        for _ in range(200):
            cfg = self._reference(self._space.sample(rng))
            if cfg.key() not in taken:
                return cfg
        return self._uniform(rng, taken)

    def kind_of(self, k: int) -> str:
        return ("arch", "merge", "precision")[self._stage - 1]

    def _arch_move(self, cfg: JointConfig, rng: np.random.Generator) -> JointConfig | None:
        moved = super()._arch_move(cfg, rng)
        return None if moved is None else self._reference(moved)

    def _completions(self, cfg: JointConfig) -> list[JointConfig]:
        return [cfg]  # each stage moves along its own axis only

    def _candidates(self, cfgs: list[JointConfig], front: list[int], rng: np.random.Generator,
                    taken: set[Any], kind: str = "arch"
                    ) -> list[tuple[JointConfig, int | None]]:
        # No uniform draws: each stage moves only along its own axis from the front.
        return [(c, p) for c, p in super()._candidates(cfgs, front, rng, taken, kind)
                if p is not None]
