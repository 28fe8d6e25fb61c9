from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import ROOT
from torch.utils.flop_counter import FlopCounterMode

from jointopt import JointConfig, SearchSpace, ViTSupernet
from jointopt.cost import get_cost_model, register_cost_model
from jointopt.cost.energy import mac_energy_pj
from jointopt.cost.latency import MeasureCache
from jointopt.cost.registry import EvalContext
from jointopt.cost.size import size_costs
from jointopt.errors import UserError
from jointopt.precision import RuntimeCaps, plan_for

SPACE = SearchSpace.from_yaml(ROOT / "search_spaces" / "quickstart.yaml")
CAPS = RuntimeCaps("openvino", half="bf16", int8=True, weight_storage=("i8", "i4"))


def _plan(cfg: JointConfig):  # type: ignore[no-untyped-def]
    return plan_for(cfg.w_bits, cfg.a_bits, depth=cfg.depth, merges=cfg.merges, caps=CAPS)


def _cost(cfg: JointConfig) -> dict[str, int]:
    return size_costs(cfg, SPACE.supernet, _plan(cfg), in_chans=1, num_classes=6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macs_match_flop_counter_at_r0(seed: int) -> None:
    torch.manual_seed(seed)
    net = ViTSupernet(SPACE.supernet, in_chans=1, num_classes=6, space=SPACE).eval()
    cfg = dataclasses.replace(SPACE.sample(np.random.default_rng(seed)), tome_r=0, w_bits=32,
                              a_bits=32)
    sub = net.extract(cfg)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        sub(torch.randn(1, 1, 64, 64))
    counted = counter.get_total_flops() / 2
    assert abs(counted - _cost(cfg)["macs"]) / counted < 0.02
    assert _cost(cfg)["params"] == sum(p.numel() for p in sub.parameters())


def _reductions(cfg: JointConfig) -> list[tuple[str, JointConfig]]:
    out = []
    if cfg.depth > 2:
        out.append(("depth", dataclasses.replace(
            cfg, depth=cfg.depth - 1, num_heads=cfg.heads[:-1], mlp_ratio=cfg.ratios[:-1],
            tome_r=cfg.merges[:-1])))
    if cfg.embed_dim > 64:
        out.append(("embed_dim", dataclasses.replace(cfg, embed_dim=cfg.embed_dim - 32)))
    if max(cfg.heads) > 1:
        out.append(("num_heads", dataclasses.replace(
            cfg, num_heads=tuple(max(1, h - 1) for h in cfg.heads))))
    if max(cfg.ratios) > 2:
        out.append(("mlp_ratio", dataclasses.replace(
            cfg, mlp_ratio=tuple(max(2.0, m - 1) for m in cfg.ratios))))
    out.append(("tome_r", dataclasses.replace(cfg, tome_r=tuple(r + 2 for r in cfg.merges))))
    return out


# Precisions in order of what runs: each step multiplies in no more bits than the one before.
BIT_CHAIN = [(32, 32), (16, 16), (8, 16), (8, 8), (4, 8)]
# Fewer weight bits at the same activations: stored in no more bytes.
WEIGHT_STEPS = [((32, 32), (8, 32)), ((8, 32), (4, 32)), ((16, 16), (8, 16)),
                ((8, 16), (4, 16))]


def test_costs_never_increase_when_an_axis_is_lowered() -> None:
    rng = np.random.default_rng(0)
    starts = [SPACE.max_config] + [SPACE.sample(rng) for _ in range(25)]
    checked = 0
    for cfg in starts:
        base = _cost(cfg)
        for axis, lower in _reductions(cfg):
            c = _cost(lower)
            # Merging adds its index constants to the deployed graph (model_bytes counts them),
            # so only the work falls with more merges.
            keys = ("macs", "bitops") if axis == "tome_r" else ("macs", "bitops", "model_bytes")
            for k in keys:
                assert c[k] <= base[k], (axis, k, cfg, lower)
            checked += 1
        for (w0, a0), (w1, a1) in zip(BIT_CHAIN, BIT_CHAIN[1:], strict=False):
            hi = _cost(dataclasses.replace(cfg, w_bits=w0, a_bits=a0))
            lo = _cost(dataclasses.replace(cfg, w_bits=w1, a_bits=a1))
            assert lo["macs"] == hi["macs"] and lo["bitops"] <= hi["bitops"]
        for (w0, a0), (w1, a1) in WEIGHT_STEPS:
            hi = _cost(dataclasses.replace(cfg, w_bits=w0, a_bits=a0))
            lo = _cost(dataclasses.replace(cfg, w_bits=w1, a_bits=a1))
            assert lo["model_bytes"] < hi["model_bytes"], ((w0, a0), (w1, a1))
        # a 4-bit grid runs in 8-bit kernels: charged as 8-bit, not as 4
        assert _cost(dataclasses.replace(cfg, w_bits=4, a_bits=8))["bitops"] == \
            _cost(dataclasses.replace(cfg, w_bits=8, a_bits=8))["bitops"]
    assert checked > 50


def test_merging_reduces_macs_but_not_params() -> None:
    cfg = SPACE.max_config
    merged = dataclasses.replace(cfg, tome_r=8)
    assert _cost(merged)["macs"] < 0.7 * _cost(cfg)["macs"]
    assert _cost(merged)["params"] == _cost(cfg)["params"]


def test_horowitz_table() -> None:
    assert mac_energy_pj("f32") == pytest.approx(3.7 + 0.9)
    assert mac_energy_pj("bf16") == pytest.approx(1.1 + 0.4)  # fp16 figures: bf16's bound
    assert mac_energy_pj("i8") == pytest.approx(0.2 + 0.1)  # int32 accumulation


def test_user_cost_model_registry() -> None:
    @register_cost_model("latency", "test-device")
    class Fixed:
        def __call__(self, ctx: EvalContext) -> dict:
            return {"latency_ms": ctx.cfg.depth * 1.0, "throughput_ips": 1.0,
                    "latency_runtime": "test-device"}

    model = get_cost_model("latency", "test-device")
    ctx = EvalContext(cfg=SPACE.max_config, shape=SPACE.supernet, in_chans=1, num_classes=6,
                      io_bits=8, batch_size=4)
    assert model(ctx)["latency_ms"] == 6.0
    with pytest.raises(UserError, match="evaluate.latency='nope'"):
        get_cost_model("latency", "nope")


def test_measure_cache_is_shared_across_instances(tmp_path) -> None:
    a = MeasureCache(tmp_path / "c.sqlite")
    a.put("k", {"latency_ms": 1.5})
    assert MeasureCache(tmp_path / "c.sqlite").get("k") == {"latency_ms": 1.5}
    assert a.get("missing") is None


def test_rapl_energy_reads_the_counter_around_batch_runs(tmp_path, monkeypatch) -> None:
    from jointopt.cost import energy

    counter = tmp_path / "energy_uj"
    counter.write_text("0")
    reads = iter(range(0, 10**9, 5_000_000))  # 5 J between the two reads
    monkeypatch.setattr(energy, "RAPL", counter)
    monkeypatch.setattr(energy, "_read_uj", lambda: next(reads))
    torch.manual_seed(0)
    net = ViTSupernet(SPACE.supernet, in_chans=1, num_classes=6, space=SPACE).eval()
    cfg = JointConfig(depth=2, embed_dim=64, num_heads=1, mlp_ratio=2.0)
    ctx = EvalContext(cfg=cfg, shape=SPACE.supernet, in_chans=1, num_classes=6, io_bits=8,
                      batch_size=4, float_model=net.extract(cfg).eval(), workdir=tmp_path,
                      plan=_plan(cfg), metrics={"model_bytes": 1000})
    out = get_cost_model("energy", "rapl")(ctx)
    assert out["energy_source"] == "rapl"
    assert out["energy_mj"] == pytest.approx(5000.0 / (10 * 4))  # 5 J over 10 runs of 4 images
    monkeypatch.setattr(energy, "RAPL", tmp_path / "missing")
    assert get_cost_model("energy", "rapl")(ctx)["energy_source"] == "model:horowitz45"


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_float_size_costs_count_the_stem_and_ignore_the_precision(stem: str) -> None:
    from jointopt.cost.size import float_size_costs

    shape = dataclasses.replace(SPACE.supernet, stem=stem)
    cfg = dataclasses.replace(SPACE.max_config, w_bits=8, a_bits=8)
    got = float_size_costs(cfg, shape, in_chans=1, num_classes=6)
    fp32 = dataclasses.replace(cfg, w_bits=32, a_bits=32)
    plan = plan_for(32, 32, depth=cfg.depth, merges=cfg.merges, caps=CAPS,
                    stem_convs=len(shape.stem_convs(1)))
    assert got == size_costs(fp32, shape, plan, in_chans=1, num_classes=6)
    patch = float_size_costs(cfg, SPACE.supernet, in_chans=1, num_classes=6)
    assert (got["macs"] > patch["macs"]) == (stem == "conv")
