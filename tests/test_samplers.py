"""The joint samplers on an analytic problem with the structure of the real one: the
architecture decides accuracy, precision and merging scale the cost and cost a little accuracy.
No model is evaluated, so these run in a second or two."""

from __future__ import annotations

import optuna
import pytest
from helpers.analytic import OBJ, SPACE, analytic_metrics
from optuna.trial import TrialState

from jointopt.controllers.axiswise import AxiswiseSampler
from jointopt.controllers.staged import StagedSampler
from jointopt.pareto import hypervolume
from jointopt.space import JointConfig


def _run(sampler: optuna.samplers.BaseSampler, n: int,
         storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=sampler, storage=storage)
    study.set_metric_names([o.key for o in OBJ])
    study.enqueue_trial(SPACE.params_from_config(SPACE.max_config),
                        user_attrs={"baseline": True})

    study.optimize(_objective, n_trials=n)
    return study


def _objective(trial: optuna.Trial) -> list[float]:
    cfg = SPACE.suggest(trial)
    trial.set_user_attr("config", cfg.to_dict())
    trial.set_user_attr("config_key", cfg.key())
    m = analytic_metrics(cfg)
    return [m[o.key] for o in OBJ]


def _hv(study: optuna.Study) -> float:
    recs = [{"metrics": dict(zip([o.key for o in OBJ], t.values, strict=True)),
             "feasible": True} for t in study.trials if t.state == TrialState.COMPLETE]
    return hypervolume(recs, OBJ, recs[0])


def test_axiswise_proposes_distinct_valid_configs_and_beats_random() -> None:
    ours, theirs = [], []
    for seed in range(3):
        ax = _run(AxiswiseSampler(space=SPACE, seed=seed, n_startup=4), 30)
        keys = [t.user_attrs["config_key"] for t in ax.trials]
        assert len(set(keys)) == len(keys) == 30  # no repeats, ever
        ours.append(_hv(ax))
        theirs.append(_hv(_run(optuna.samplers.RandomSampler(seed=seed), 30)))
    assert all(a > b for a, b in zip(ours, theirs, strict=True))
    # and clearly on the mean (axiswise 0.876, random 0.854 when written)
    assert sum(ours) / 3 >= sum(theirs) / 3 + 0.01


def _arch(cfg: JointConfig) -> tuple[object, ...]:
    return cfg.depth, cfg.embed_dim, cfg.heads, cfg.ratios


def test_axiswise_alternates_architecture_and_cheap_trials() -> None:
    n_startup, n = 4, 30
    sampler = AxiswiseSampler(space=SPACE, seed=0, n_startup=n_startup, arch_share=0.6)
    kinds = [sampler.kind_of(k) for k in range(n)]
    assert kinds[:5] == ["arch", "arch", "precision", "arch", "merge"]  # 3 of every 5, spread
    assert kinds.count("arch") == 18
    assert {AxiswiseSampler(space=SPACE, arch_share=1.0).kind_of(k) for k in range(9)} \
        == {"arch"}
    assert {AxiswiseSampler(space=SPACE, arch_share=0.0).kind_of(k) for k in range(9)} \
        == {"precision", "merge"}
    study = _run(sampler, n)
    cfgs = [SPACE.config_from_params(t.params) for t in study.trials]
    guided = list(range(1 + n_startup, n))  # after the queued baseline and the start
    new_arch = 0
    for i, kind in zip(guided, kinds, strict=False):
        earlier = {_arch(c) for c in cfgs[:i]}
        if kind != "arch":  # the merging or precision of an architecture measured already
            assert _arch(cfgs[i]) in earlier
            same = [c for c in cfgs[:i] if _arch(c) == _arch(cfgs[i])]
            if kind == "precision":
                assert any(c.merges == cfgs[i].merges for c in same)
            else:
                assert any(c.precision == cfgs[i].precision for c in same)
        elif _arch(cfgs[i]) not in earlier:
            new_arch += 1
            assert not any(cfgs[i].merges)  # a new architecture is first measured unmerged
    arch_trials = [i for i, k in zip(guided, kinds, strict=False) if k == "arch"]
    assert new_arch >= 0.8 * len(arch_trials)
    # New architectures are completed over the cheap axes: on this problem a lower precision
    # always pays, so they are measured at one, not at float32.
    assert sum(cfgs[i].precision == "w32a32" for i in arch_trials) <= len(arch_trials) // 4


def test_axiswise_checks_its_options() -> None:
    with pytest.raises(ValueError, match="arch_share"):
        AxiswiseSampler(space=SPACE, arch_share=1.5)
    with pytest.raises(ValueError, match="global_share"):
        AxiswiseSampler(space=SPACE, global_share=-0.1)
    with pytest.raises(ValueError, match="n_startup"):
        AxiswiseSampler(space=SPACE, n_startup=0)


def test_staged_searches_architecture_then_tokens_then_precision() -> None:
    n = 20
    storage = optuna.storages.InMemoryStorage()  # where the sampler records the stages
    study = _run(StagedSampler(space=SPACE, n_trials=n, seed=0, n_startup=3, storage=storage), n,
                 storage)
    trials = study.trials
    stage = [t.system_attrs.get("jointopt:stage") for t in trials]
    assert stage[1:] == [1] * 9 + [2] * 5 + [3] * 5  # 50/25/25 after the queued baseline
    cfgs = [SPACE.config_from_params(t.params) for t in trials]
    for t, c in zip(trials, cfgs, strict=True):
        s = t.system_attrs.get("jointopt:stage")
        if s == 1:  # architecture only: float32, nothing merged
            assert c.precision == "w32a32" and sum(c.merges) == 0
        elif s == 2:  # a stage-1 architecture with merging
            assert c.precision == "w32a32"
            assert any(c.depth == d.depth and c.embed_dim == d.embed_dim and c.heads == d.heads
                       and c.ratios == d.ratios for d in cfgs[:10])
        else:  # an earlier config with another precision
            assert any(c.key().rsplit("_", 1)[0] == d.key().rsplit("_", 1)[0]
                       and c.precision != d.precision for d in cfgs[:15])


def test_axiswise_accuracy_model_learns_precision_within_architectures() -> None:
    import numpy as np

    from jointopt.controllers.axiswise import _Ridge

    rng = np.random.default_rng(0)
    # columns: intercept, one architecture feature, then a precision indicator (the cheap part)
    size = rng.uniform(0, 1, 12)
    prec = np.array([1.0] * 6 + [0.0] * 6)  # each architecture measured at one precision only
    size[:6] += 2.0  # ... and the int8 ones happen to be the large, accurate architectures
    x = np.column_stack([np.ones(12), size, prec])
    y = 0.5 - 0.1 * size  # error falls with size; precision itself costs nothing
    groups = np.arange(12)
    pooled = _Ridge(x, y)
    within = _Ridge(x, y, groups=groups, n_arch=2)
    assert abs(within.coef[2]) < 1e-9 < abs(pooled.coef[2])  # no pairs: no precision effect
    # one architecture measured at both precisions, int8 0.03 worse: the model follows it
    x2 = np.vstack([x, [1.0, size[0], 0.0]])
    y2 = np.append(y, y[0] - 0.03)
    fit = _Ridge(x2, y2, groups=np.append(groups, 0), n_arch=2)
    assert 0.005 < fit.coef[2] < 0.03


def _arch_of(cfg: JointConfig) -> tuple[object, ...]:
    return cfg.depth, cfg.embed_dim, cfg.heads, cfg.ratios


def test_warm_start_measures_the_smallest_architecture_first() -> None:
    smallest = _arch_of(SPACE.min_config)
    for sampler in (AxiswiseSampler(space=SPACE, seed=0, n_startup=3, warm_start=True),
                    StagedSampler(space=SPACE, n_trials=8, seed=0, n_startup=3,
                                  warm_start=True)):
        first = SPACE.config_from_params(_run(sampler, 2).trials[1].params)  # after baseline
        assert _arch_of(first) == smallest and not any(first.merges)
        if isinstance(sampler, StagedSampler):  # its first stage measures float32 only
            assert first.precision == "w32a32"
    cold = [SPACE.config_from_params(
        _run(AxiswiseSampler(space=SPACE, seed=s, n_startup=3), 2)  # off by default
        .trials[1].params) for s in range(3)]
    assert any(_arch_of(c) != smallest for c in cold)


def test_architecture_front_projects_measured_points_to_float32_unmerged() -> None:
    import numpy as np

    from jointopt.controllers.axiswise import _features, _Ridge

    sampler = AxiswiseSampler(space=SPACE, seed=0, arch_front=1.0)
    precisions = list(SPACE.choices["precision"])
    base = SPACE.max_config
    cfgs = [sampler._with(base, precision=p) for p in precisions]  # one arch, every precision
    cfgs += [sampler._with(SPACE.min_config, precision=p, **{f"tome_r_{i}": 0 for i in
                                                             range(SPACE.min_config.depth)})
             for p in precisions]
    m = [analytic_metrics(c) for c in cfgs]
    pts = np.array([[1 - x["accuracy"], x["latency_ms"], x["energy_mj"]] for x in m])
    feats = np.array([np.concatenate(_features(c, SPACE, precisions)) for c in cfgs])
    groups = np.array([0] * len(precisions) + [1] * len(precisions))
    n_arch = len(_features(cfgs[0], SPACE, precisions)[0])
    models = [_Ridge(feats, pts[:, 0], groups=groups, n_arch=n_arch, alpha=1e-6),
              _Ridge(feats, np.log(pts[:, 1]), alpha=1e-6),
              _Ridge(feats, np.log(pts[:, 2]), alpha=1e-6)]
    proj = sampler._projected(pts, feats, [sampler._reference(c) for c in cfgs], models,
                              [True, False, False])
    fp32 = [i for i, c in enumerate(cfgs) if c.precision == "w32a32"]
    int8 = [i for i, c in enumerate(cfgs) if c.precision == "w8a8"]
    assert np.allclose(proj[fp32], pts[fp32])  # at the reference already: unmoved
    # an int8 point moves to about its architecture's float32 point: dearer, more accurate
    for i, j in zip(int8, fp32, strict=True):
        assert np.all(proj[i, 1:] > pts[i, 1:])
        assert proj[i, 0] < pts[i, 0]
        assert np.allclose(proj[i], pts[j], rtol=0.25, atol=0.01)


def test_axiswise_with_architecture_front_trials_stays_distinct_and_beats_random() -> None:
    sampler = AxiswiseSampler(space=SPACE, seed=0, n_startup=4, arch_front=0.5)
    kinds = [(sampler.kind_of(k), sampler._by_arch(k)) for k in range(30)]
    arch = [b for k, b in kinds if k == "arch"]
    assert sum(arch) == len(arch) // 2 and not any(b for k, b in kinds if k != "arch")
    study = _run(sampler, 30)
    keys = [t.user_attrs["config_key"] for t in study.trials]
    assert len(set(keys)) == 30
    rand = _run(optuna.samplers.RandomSampler(seed=0), 30)
    assert _hv(study) > _hv(rand)


@pytest.mark.parametrize("name", ["axiswise", "staged", "nsga2", "nsga3", "tpe", "gp", "random"])
def test_every_built_in_sampler_pickles_mid_study(name: str, tmp_path) -> None:
    """Ray Tune pickles its searcher, sampler included (Optuna 5.1's genetic samplers hold a
    thread lock); an unpickled sampler goes on sampling the same study (an RDB storage, which
    ``staged`` holds, pickles as its URL)."""
    import pickle

    from jointopt.controllers.samplers import make_sampler
    from jointopt.controllers.spec import SamplerSpec, SearchSpec

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    options = {"n_trials": 14} if name == "staged" else \
        {"n_startup_trials": 4} if name in ("tpe", "gp") else \
        {"population_size": 4} if name.startswith("nsga") else {}
    spec = SearchSpec(sampler=SamplerSpec(name, options=options))
    sampler = make_sampler(spec, n_objectives=len(OBJ), seed=0, space=SPACE, storage=storage)
    study = _run(sampler, 9, storage)  # past the first generation / the random start
    again = pickle.loads(pickle.dumps(study.sampler))
    assert type(again) is type(sampler)
    study.sampler = again
    study.optimize(_objective, n_trials=3)
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 12
