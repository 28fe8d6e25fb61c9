"""``axiswise``: a joint sampler that moves one axis at a time, screened by fitted surrogates.

The three axes are not alike. The architecture decides accuracy; merging and precision change
an architecture's cost predictably and its accuracy a little. So the sampler:

1. starts from the study's queued configs (the baseline, seed configs) and ``n_startup``
   spread-out configs whose precisions cycle through the space's choices, so every precision
   is measured early;
2. then alternates kinds of trial on a fixed schedule (``arch_share`` of them explore
   architectures, the rest refine the cheap axes, precision and merging in turn), so that none
   crowds the others out:
   - an *architecture* trial screens neighbours of the Pareto front one architecture step
     away (depth, width, one layer's or every layer's heads or MLP ratio) and, with share
     ``global_share``, architectures drawn anywhere in the space; each is completed with
     every precision, unmerged, so a new architecture is measured at the precision the
     surrogates expect to pay, not at float32, and merging is tried once it has an accuracy;
   - a *precision* or *merge* trial screens one-step changes of a front member's precision,
     or of its merging;
3. screens with ridge regressions fitted on every measured trial (the log of each cost ratio
   and the error, against log MACs, log weight count, depth, merging and the precision),
   applied as a change from the parent, so the parent's measured values anchor the
   prediction;
4. measures the candidate whose predicted point adds the most hypervolume to the front
   (optimistic by the accuracy model's residual spread, so unexplored architectures get
   tried), never one measured or running already.

Screening measures nothing: every candidate that is evaluated is a trial and counts against
the budget, and every front member is measured. HAT (Wang et al., ACL 2020) and Once-for-All
(Cai et al., ICLR 2020) screen candidates with fitted predictors in the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from jointopt.controllers.surrogates import _ACCURACY, _arch, _features, _Ridge, _row
from jointopt.pareto import Objective, hypervolume_of_points, normalize
from jointopt.precision import parse_precision
from jointopt.space import PER_LAYER_FIELDS, JointConfig, SearchSpace

__all__ = ["AxiswiseSampler"]


KINDS = ("arch", "precision", "merge")  # what a guided trial changes (see ``kind_of``)


class AxiswiseSampler(optuna.samplers.BaseSampler):
    """One-axis-at-a-time moves from the Pareto front, screened by fitted surrogates.

    Args:
        space: the study's search space.
        seed: seeds every draw (with the trial number, so a resumed search draws the same).
        n_startup: spread-out configs before the surrogates take over.
        n_candidates: neighbours screened per trial.
        arch_share: share of the trials after the start that explore architectures (the
            rest change the merging or precision of a front member).
        global_share: share of an architecture trial's candidates drawn anywhere in the
            space rather than one step from the front.
        explore: how many residual standard deviations the accuracy estimate is raised by.
        arch_front: share of the architecture trials that choose their architecture on the
            *architecture front* (see :meth:`_projected`) rather than on the joint front.
        warm_start: the first spread-out config is the space's smallest architecture (see
            :meth:`_startup`).
    """

    def __init__(self, *, space: SearchSpace, seed: int | None = None, n_startup: int = 6,
                 n_candidates: int = 96, arch_share: float = 0.6, global_share: float = 0.25,
                 explore: float = 1.0, arch_front: float = 0.0,
                 warm_start: bool = False) -> None:
        if n_startup < 1 or n_candidates < 1:
            raise ValueError(f"n_startup ({n_startup}) and n_candidates ({n_candidates}) must "
                             "be at least 1")
        for name, share in (("arch_share", arch_share), ("global_share", global_share),
                            ("arch_front", arch_front)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {share}")
        self._space = space
        self._seed = 0 if seed is None else seed
        self._n_startup, self._n_candidates = n_startup, n_candidates
        self._arch_share, self._global_share = arch_share, global_share
        self._explore = explore
        self._arch_front = arch_front
        self._warm_start = warm_start
        self._precisions = list(space.choices["precision"])
        self._proposals: dict[int, dict[str, Any]] = {}
        self._fallback = optuna.samplers.RandomSampler(seed=seed)

    # ---- Optuna's sampler interface -----------------------------------------------------
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # a queued config (baseline, seeds)
            return
        cfg = self.propose(study, trial.number)
        self._proposals[trial.number] = self._space.params_from_config(cfg)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        params = self._proposals.get(trial.number, {})
        value = params.get(param_name)
        if isinstance(param_distribution, CategoricalDistribution) \
                and value in param_distribution.choices:
            return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._proposals.pop(trial.number, None)

    # ---- proposal -----------------------------------------------------------------------
    def propose(self, study: optuna.Study, number: int) -> JointConfig:
        """The config trial ``number`` should measure, from the study's trials so far."""
        rng = np.random.default_rng([self._seed, number])
        trials = study.get_trials(deepcopy=False)
        taken = {t.user_attrs.get("config_key") for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.RUNNING)}
        taken |= {self._key(p) for p in self._proposals.values()}
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values
                and "config" in t.user_attrs]
        fresh = sum(1 for t in done if not t.user_attrs.get("baseline")
                    and not t.user_attrs.get("seed_config"))
        if fresh < self._n_startup or len(done) < 3:
            return self._startup(rng, fresh, taken)
        k = fresh - self._n_startup
        return self._screened(study, done, rng, taken, self.kind_of(k),
                              by_arch=self._by_arch(k))

    def _by_arch(self, k: int) -> bool:
        """Whether guided trial ``k``, an architecture trial, picks its architecture on the
        architecture front: ``arch_front`` of the architecture trials do, evenly spread."""
        if self.kind_of(k) != "arch" or self._arch_front <= 0.0:
            return False
        n = sum(1 for i in range(k) if self.kind_of(i) == "arch")  # architecture trials before
        f = self._arch_front
        return math.ceil(round((n + 1) * f, 9)) > math.ceil(round(n * f, 9))

    def kind_of(self, k: int) -> str:
        """What guided trial ``k`` (0 = the first after the start) changes: ``"arch"``,
        ``"precision"`` or ``"merge"``. ``arch_share`` of every run of trials explore
        architectures, evenly spread; the others take turns between precision and merging, so
        neither cheap axis goes unmeasured because a few early trials misled the surrogates."""
        s = self._arch_share
        arch_before = math.ceil(round(k * s, 9))
        if math.ceil(round((k + 1) * s, 9)) > arch_before:
            return "arch"
        return "precision" if (k - arch_before) % 2 == 0 else "merge"

    def _key(self, params: dict[str, Any]) -> str:
        return self._space.config_from_params(params).key()

    def _smallest(self) -> JointConfig:
        """The space's smallest architecture, unmerged (its precision: max_config's)."""
        return self._reference(self._space.min_config)

    def _startup(self, rng: np.random.Generator, k: int, taken: set[Any]) -> JointConfig:
        """Spread-out config ``k`` of the start. With ``warm_start`` the first is the smallest
        architecture: the study's baseline is the largest, and the smallest is the cheap end
        of every front (its cost is the lowest an architecture can give; precision and merging
        then cut it further), which random draws from a space of thousands of architectures
        reach late. On DeepPCB, where accuracy varies by about a point over the whole space, the
        front's hypervolume is mostly that end's."""
        prec = self._precisions[(k * 3 + 1) % len(self._precisions)]
        if k == 0 and self._warm_start:
            cfg = self._with(self._smallest(), precision=prec)
            if cfg.key() not in taken:
                return cfg
        for _ in range(200):
            cfg = self._space.sample(rng)
            cfg = self._with(cfg, precision=prec)
            if cfg.key() not in taken:
                return cfg
        return self._uniform(rng, taken)

    def _uniform(self, rng: np.random.Generator, taken: set[Any]) -> JointConfig:
        for _ in range(1000):
            cfg = self._space.sample(rng)
            if cfg.key() not in taken:
                return cfg
        return self._space.sample(rng)  # exhausted: the backend prunes the repeat and stops

    def _with(self, cfg: JointConfig, **changes: Any) -> JointConfig:
        params = self._space.params_from_config(cfg)
        params.update(changes)
        return self._space.config_from_params(params)

    def _screened(self, study: optuna.Study, done: list[FrozenTrial], rng: np.random.Generator,
                  taken: set[Any], kind: str = "arch", by_arch: bool = False) -> JointConfig:
        names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
        objectives = [Objective(n, d.name.lower()) for n, d in zip(names, study.directions,
                                                                    strict=True)]
        records = [{"metrics": dict(zip(names, t.values, strict=True)), "feasible": True}
                   for t in done]
        base_trial = next((t for t in done if t.user_attrs.get("baseline")), done[0])
        base = {"metrics": dict(zip(names, base_trial.values, strict=True))}
        pts = normalize(records, objectives, base)
        cfgs = [JointConfig.from_dict(t.user_attrs["config"]) for t in done]
        parts = [_features(c, self._space, self._precisions) for c in cfgs]
        feats = np.array([np.concatenate(p) for p in parts])
        n_arch = len(parts[0][0])
        archs: dict[tuple[Any, ...], int] = {}
        groups = np.array([archs.setdefault(_arch(c), len(archs)) for c in cfgs])
        ok = np.all(np.isfinite(pts), axis=1)
        models = []
        for j, obj in enumerate(objectives):
            y = pts[ok, j]
            if obj.is_accuracy or obj.key in _ACCURACY:
                models.append(_Ridge(feats[ok], y, groups=groups[ok], n_arch=n_arch))
            else:
                models.append(_Ridge(feats[ok], np.log(np.maximum(y, 1e-9))))
        acc = [obj.is_accuracy or obj.key in _ACCURACY for obj in objectives]
        if by_arch and kind == "arch":
            ref = [self._reference(c) for c in cfgs]
            proj = self._projected(pts, feats, ref, models, acc)
            arch_front = self._front(proj, ok)
            cands = self._candidates(cfgs, arch_front, rng, taken, "arch")
            if cands:
                # The architecture by its gain on the architecture front, at the reference...
                one = {_arch(c): (self._reference(c), p) for c, p in cands}  # one per arch
                picked = self._best(list(one.values()), proj, arch_front,
                                    [_row(c, self._space, self._precisions) for c in ref],
                                    models, acc, rng)
                if picked is not None:
                    arch = _arch(picked)
                    # ...then its precision by its gain on the joint front.
                    cands = [(c, p) for c, p in cands if _arch(c) == arch]
                    best = self._best(cands, pts, self._front(pts, ok), feats, models, acc, rng)
                    if best is not None:
                        return best
        front_idx = self._front(pts, ok)
        # The scheduled kind first, then the others where it is not open (one precision only)
        for k in (kind, *(other for other in KINDS if other != kind)):
            cands = self._candidates(cfgs, front_idx, rng, taken, k)
            if cands:
                break
        best = self._best(cands, pts, front_idx, feats, models, acc, rng)
        return best if best is not None else self._uniform(rng, taken)

    @staticmethod
    def _front(pts: np.ndarray, ok: np.ndarray) -> list[int]:
        return [int(i) for i in np.flatnonzero(ok)
                if not np.any(np.all(pts[ok] <= pts[i], axis=1)
                              & np.any(pts[ok] < pts[i], axis=1))]

    def _best(self, cands: list[tuple[JointConfig, int | None]], pts: np.ndarray,
              front_idx: list[int], feats: Any, models: list[_Ridge], acc: list[bool],
              rng: np.random.Generator) -> JointConfig | None:
        """The candidate whose predicted point adds the most hypervolume to the front of
        ``pts`` (rows ``front_idx``); a candidate with a parent is predicted as the parent's
        point (``pts``, features ``feats``) moved by the surrogates' difference."""
        front = pts[front_idx]
        hv0 = hypervolume_of_points(front)
        best, best_gain = None, -math.inf
        for cand, parent in cands:
            f = _row(cand, self._space, self._precisions)
            pred = np.empty(len(models))
            for j, (model, accuracy) in enumerate(zip(models, acc, strict=True)):
                if parent is None:
                    value = model(f)
                else:  # the parent's measurement, moved by the model's difference
                    anchor = pts[parent, j] if accuracy else math.log(max(pts[parent, j], 1e-9))
                    value = anchor + model(f) - model(feats[parent])
                if accuracy:
                    pred[j] = max(0.0, value - self._explore * model.sigma)
                else:
                    pred[j] = math.exp(value)
            gain = hypervolume_of_points(np.vstack([front, pred])) - hv0
            gain += 1e-9 * rng.random()  # ties: a random one
            if gain > best_gain:
                best, best_gain = cand, gain
        return best

    def _reference(self, cfg: JointConfig) -> JointConfig:
        """``cfg``'s architecture at the reference cheap axes: max_config's precision (the
        first of the space's if that is not one of them), unmerged."""
        prec = self._space.max_config.precision
        prec = prec if prec in self._precisions else self._precisions[0]
        return self._with(cfg, precision=prec, **{f"tome_r_{i}": 0 for i in range(cfg.depth)})

    def _projected(self, pts: np.ndarray, feats: np.ndarray, ref: list[JointConfig],
                   models: list[_Ridge], acc: list[bool]) -> np.ndarray:
        """Every measured point moved to its architecture's reference cheap axes by the
        surrogates' difference: what the architecture would measure in float32, unmerged.

        On these points the front is the *architecture front*, the one the staged selection's
        first stage climbs: an architecture whose measured variants are dominated by a small
        int8 model's can still lead it, because precision and merging no longer count. On
        WM-811K the joint front settled on depth 2 while the staged selection's architecture
        stage found a depth-5 architecture 2 points more accurate than any (run F1, section 2).
        """
        out = pts.copy()
        for i, cfg in enumerate(ref):
            f = _row(cfg, self._space, self._precisions)
            for j, (model, accuracy) in enumerate(zip(models, acc, strict=True)):
                delta = model(f) - model(feats[i])
                if accuracy:
                    out[i, j] = pts[i, j] + delta
                elif np.isfinite(pts[i, j]) and pts[i, j] > 0:
                    out[i, j] = math.exp(math.log(pts[i, j]) + delta)
        return out

    def _candidates(self, cfgs: list[JointConfig], front: list[int], rng: np.random.Generator,
                    taken: set[Any], kind: str = "arch"
                    ) -> list[tuple[JointConfig, int | None]]:
        """Up to ``n_candidates`` unmeasured configs with the front member each steps from
        (None for a draw anywhere): architecture steps, each completed over the cheap axes, for
        ``kind="arch"``; precision or merging steps for ``"precision"`` or ``"merge"``."""
        out: list[tuple[JointConfig, int | None]] = []
        seen = set(taken)
        measured = {_arch(c) for c in cfgs}
        moves = 0
        for _ in range(self._n_candidates * 4):
            if moves >= self._n_candidates:
                break
            cand: JointConfig | None
            parent: int | None = None
            if kind == "arch" and rng.random() < self._global_share:
                cand = self._space.sample(rng)
            else:
                parent = int(front[rng.integers(len(front))])
                cand = self._arch_move(cfgs[parent], rng) if kind == "arch" \
                    else self._cheap_move(cfgs[parent], rng, kind)
                if cand is None:
                    continue
            if kind == "arch" and _arch(cand) in measured:
                continue  # an architecture trial measures an architecture not measured yet
            variants = self._completions(cand) if kind == "arch" else [cand]
            n = len(out)
            for v in variants:
                try:
                    self._space.validate(v)
                except Exception:  # noqa: BLE001  (a step outside the space: skip it)
                    continue
                if v.key() not in seen:
                    seen.add(v.key())
                    out.append((v, parent))
            moves += len(out) > n
        return out

    def _completions(self, cfg: JointConfig) -> list[JointConfig]:
        """``cfg``'s architecture, unmerged, at every precision of the space: the surrogates
        choose the precision a new architecture is first measured at, and merging is left to
        cheap moves once the architecture has a measured accuracy.  A new architecture
        measured merged confounds the two (the merged variant's accuracy drop is read as the
        architecture's); on DeepPCB's section-2 cell joint's mean hypervolume at 40 configs
        went from 0.9320 (run pcb4) to 0.9409 (run pcb5, benchmarks/results/bench_joint.jsonl)."""
        unmerged = {f"tome_r_{i}": 0 for i in range(cfg.depth)}
        return [self._with(cfg, precision=prec, **unmerged) for prec in self._precisions]

    def _step(self, values: tuple[Any, ...], current: Any, rng: np.random.Generator) -> Any:
        if current not in values:
            return values[int(rng.integers(len(values)))]
        i = values.index(current) + (1 if rng.random() < 0.5 else -1)
        return values[min(max(i, 0), len(values) - 1)]

    def _arch_move(self, cfg: JointConfig, rng: np.random.Generator) -> JointConfig | None:
        params = self._space.params_from_config(cfg)
        c = self._space.choices
        kind = rng.choice(["depth", "embed_dim", "layer", "all"])
        if kind == "depth":
            depth = self._step(c["depth"], cfg.depth, rng)
            params["depth"] = depth
            for i in range(cfg.depth, depth):  # a new layer copies the last one
                for name in PER_LAYER_FIELDS:
                    value = params[f"{name}_{cfg.depth - 1}"]
                    choices = self._space.param_choices(f"{name}_{i}")
                    params[f"{name}_{i}"] = value if value in choices else choices[-1]
        elif kind == "embed_dim":
            params["embed_dim"] = self._step(c["embed_dim"], cfg.embed_dim, rng)
        else:
            name = str(rng.choice(["num_heads", "mlp_ratio"]))
            layers = [int(rng.integers(cfg.depth))] if kind == "layer" else range(cfg.depth)
            new = self._step(c[name], params[f"{name}_{layers[0]}"], rng)
            for i in layers:
                params[f"{name}_{i}"] = new
        return self._space.config_from_params(params)

    def _cheap_move(self, cfg: JointConfig, rng: np.random.Generator,
                    kind: str = "precision") -> JointConfig | None:
        """One precision change (``kind="precision"``) or one merging step (``"merge"``) of
        ``cfg``; None when the space has no other choice on that axis."""
        params = self._space.params_from_config(cfg)
        moved = self._precision_move(params, cfg, rng) if kind == "precision" \
            else self._merge_move(params, cfg, rng)
        if not moved:
            return None
        parse_precision(params["precision"])
        return self._space.config_from_params(params)

    def _merge_move(self, params: dict[str, Any], cfg: JointConfig,
                    rng: np.random.Generator) -> bool:
        """One step along the merging axis in ``params``: one block's ``r``, or every block's
        together; False when the space offers one merge only."""
        if len(self._space.choices["tome_r"]) < 2:
            return False
        if rng.random() < 0.5:
            i = int(rng.integers(cfg.depth))
            params[f"tome_r_{i}"] = self._step(self._space.merge_choices(i),
                                               params[f"tome_r_{i}"], rng)
        else:
            r = self._step(self._space.choices["tome_r"], params["tome_r_0"], rng)
            for i in range(cfg.depth):
                ch = self._space.merge_choices(i)
                params[f"tome_r_{i}"] = r if r in ch else max(ch)
        return True

    def _precision_move(self, params: dict[str, Any], cfg: JointConfig,
                        rng: np.random.Generator) -> bool:
        """Another precision of the space in ``params``; False when it has one only."""
        others = [p for p in self._precisions if p != cfg.precision]
        if not others:
            return False
        params["precision"] = others[int(rng.integers(len(others)))]
        return True
