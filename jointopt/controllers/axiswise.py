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

from jointopt.pareto import Objective, hypervolume_of_points, normalize
from jointopt.precision import parse_precision
from jointopt.space import PER_LAYER_FIELDS, JointConfig, SearchSpace, merge_limits

__all__ = ["AxiswiseSampler"]

_ACCURACY = ("accuracy", "balanced_accuracy")


def _features(cfg: JointConfig, space: SearchSpace, precisions: list[str]
              ) -> tuple[np.ndarray, np.ndarray]:
    """The surrogates' inputs, in two parts: the architecture's (intercept, log MACs with the
    tokens left after merging, log weight entries, depth) and the cheap axes' (merged share,
    precision one-hot). The accuracy model fits the second part within architectures."""
    s = space.supernet
    e, hd = cfg.embed_dim, s.head_dim
    patches = s.num_tokens - 1
    macs = patches * s.patch_size**2 * e
    weights = s.patch_size**2 * e
    for (n, _), r, h, m in zip(merge_limits(s.num_tokens, cfg.merges), cfg.merges, cfg.heads,
                               cfg.mlp_dims(), strict=True):
        w = h * hd
        macs += n * e * 4 * w + 2 * n * n * w + (n - r) * 2 * e * m
        weights += 4 * e * w + 2 * e * m
    merged = sum(cfg.merges) / max(1, s.num_tokens)
    onehot = [1.0 if cfg.precision == p else 0.0 for p in precisions]
    return (np.array([1.0, math.log(macs), math.log(weights), cfg.depth / s.depth]),
            np.array([merged, *onehot]))


def _row(cfg: JointConfig, space: SearchSpace, precisions: list[str]) -> np.ndarray:
    return np.concatenate(_features(cfg, space, precisions))


def _arch(cfg: JointConfig) -> tuple[Any, ...]:
    return cfg.depth, cfg.embed_dim, cfg.heads, cfg.ratios


#: Ridge penalty of the surrogates' coefficients.
ALPHA = 0.3
KINDS = ("arch", "precision", "merge")  # what a guided trial changes (see ``kind_of``)


class _Ridge:
    """Ridge regression of ``y`` on ``x`` (intercept in column 0, not shrunk).

    With ``groups`` (one architecture key per row), the coefficients of the columns from
    ``n_arch`` on (merging and precision) are estimated within architectures only: from the
    differences between configs of one architecture, as a fixed-effects regression does. The
    first trials measure each precision once, on unrelated architectures; a pooled fit credited
    their accuracy to the precision (on WM-811K it taught the model that a precision costs 3
    points, and the search never measured it again), and a strong prior instead kept every
    penalty near zero (on DeepPCB merging then looked free, new architectures were measured
    merged, and they scored just under the baseline's accuracy). Within
    architectures, a precision or merging step is compared with its own parent, so the
    coefficient is zero until such pairs exist and then follows them.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, alpha: float = ALPHA,
                 groups: np.ndarray | None = None, n_arch: int = 0) -> None:
        if groups is None:
            self.coef = self._fit(x, y, alpha)
        else:
            xc, yc = x[:, n_arch:].copy(), y.astype(float).copy()
            for g in np.unique(groups):
                rows = groups == g
                xc[rows] -= xc[rows].mean(axis=0)
                yc[rows] -= yc[rows].mean()
            cheap = np.linalg.solve(xc.T @ xc + alpha * np.eye(xc.shape[1]), xc.T @ yc)
            arch = self._fit(x[:, :n_arch], y - x[:, n_arch:] @ cheap, alpha)
            self.coef = np.concatenate([arch, cheap])
        resid = y - x @ self.coef
        self.sigma = float(np.sqrt(np.mean(resid**2))) if len(y) > 1 else 0.1

    @staticmethod
    def _fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        reg = alpha * np.eye(x.shape[1])
        reg[0, 0] = 0.0  # no shrinkage of the intercept
        return np.linalg.solve(x.T @ x + reg, x.T @ y)

    def __call__(self, x: np.ndarray) -> float:
        return float(x @ self.coef)


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
    """

    def __init__(self, *, space: SearchSpace, seed: int | None = None, n_startup: int = 6,
                 n_candidates: int = 96, arch_share: float = 0.6, global_share: float = 0.25,
                 explore: float = 1.0) -> None:
        if n_startup < 1 or n_candidates < 1:
            raise ValueError(f"n_startup ({n_startup}) and n_candidates ({n_candidates}) must "
                             "be at least 1")
        for name, share in (("arch_share", arch_share), ("global_share", global_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {share}")
        self._space = space
        self._seed = 0 if seed is None else seed
        self._n_startup, self._n_candidates = n_startup, n_candidates
        self._arch_share, self._global_share = arch_share, global_share
        self._explore = explore
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
        return self._screened(study, done, rng, taken, self.kind_of(fresh - self._n_startup))

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

    def _startup(self, rng: np.random.Generator, k: int, taken: set[Any]) -> JointConfig:
        prec = self._precisions[(k * 3 + 1) % len(self._precisions)]
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
                  taken: set[Any], kind: str = "arch") -> JointConfig:
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
        front_idx = [int(i) for i in np.flatnonzero(ok)
                     if not np.any(np.all(pts[ok] <= pts[i], axis=1)
                                   & np.any(pts[ok] < pts[i], axis=1))]
        front = pts[front_idx]
        hv0 = hypervolume_of_points(front)
        best, best_gain = None, -math.inf
        # The scheduled kind first, then the others where it is not open (one precision only)
        for k in (kind, *(other for other in KINDS if other != kind)):
            cands = self._candidates(cfgs, front_idx, rng, taken, k)
            if cands:
                break
        for cand, parent in cands:
            f = _row(cand, self._space, self._precisions)
            pred = np.empty(len(objectives))
            for j, (obj, model) in enumerate(zip(objectives, models, strict=True)):
                accuracy = obj.is_accuracy or obj.key in _ACCURACY
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
        return best if best is not None else self._uniform(rng, taken)

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
