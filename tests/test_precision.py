"""The precision plan: its rules, and that the deployed graph, the costs and the bytes follow it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import TINY_SPACE, linear_shapes, unexplained_problems

from jointopt import JointConfig, SearchSpace, ViTSupernet, quant
from jointopt.cost.energy import mac_energy_pj, modelled_energy_mj
from jointopt.cost.registry import EvalContext
from jointopt.cost.size import layer_costs, size_costs
from jointopt.deploy import accuracy_model, check_deployment, export_onnx
from jointopt.precision import (
    DTYPE_BYTES,
    PrecisionPlan,
    RuntimeCaps,
    invalid_reason,
    parse_precision,
    plan_for,
    valid_pairs,
)
from jointopt.runtimes import get_runtime, load_batches

OV = RuntimeCaps("openvino", half="bf16", int8=True, weight_storage=("i8", "i4"))
NO_HALF = RuntimeCaps("plain", half=None, int8=True, weight_storage=())

# The precisions the deployed-graph tests run: float, 16-bit, int8 and weight-only.
SAMPLE = [(32, 32), (16, 16), (8, 8), (4, 8), (8, 16), (4, 16), (4, 32)]


def test_valid_pairs_and_names() -> None:
    assert invalid_reason(32, 16) and invalid_reason(16, 32) and invalid_reason(32, 8)
    assert invalid_reason(5, 8) and invalid_reason(8, 12)
    assert all(invalid_reason(w, a) is None for w, a in SAMPLE)
    assert parse_precision("w4a16") == (4, 16)
    with pytest.raises(ValueError, match="integer activations"):
        parse_precision("w32a8")
    assert valid_pairs((32, 16, 8, 4), (32, 16, 8)) == [
        (32, 32), (16, 16), (8, 32), (8, 16), (8, 8), (4, 32), (4, 16), (4, 8)]


def test_plan_rules() -> None:
    merges = (2, 0)
    p = plan_for(8, 8, depth=2, merges=merges, caps=OV)
    assert p.label == "openvino-int8" and p.float_dtype == "f32"
    assert p.part("blocks.0.qkv").compute == "i8" and p.part("blocks.0.qkv").weight == "i8"
    # Brevitas quantizes linear inputs only: the attention matmuls and the merge stay float.
    assert p.part("blocks.1.attn_qk").compute == "f32"
    assert p.part("blocks.0.merge").compute == "f32"
    with pytest.raises(KeyError):
        p.part("blocks.1.merge")  # r = 0 in block 1: no merge
    half = plan_for(16, 16, depth=2, merges=merges, caps=OV)
    assert half.label == "openvino-bf16" and half.other_weights == "f16"
    assert {q.compute for q in half.parts} == {"bf16"}
    w4 = plan_for(4, 16, depth=2, merges=merges, caps=OV)
    assert w4.label == "openvino-w4-bf16" and w4.kind == "weight-only"
    assert w4.part("blocks.0.fc1").weight == "i4" and w4.part("blocks.0.fc1").compute == "bf16"
    # the ends run at io_bits = 8: int8 weights, same float activations
    assert w4.part("head").weight == "i8" and w4.part("head").compute == "bf16"
    assert plan_for(32, 32, depth=1, merges=(0,), caps=OV).label == "openvino-f32"
    # Where the runtime lacks 16-bit kernels or the 4-bit grid runs in 8-bit kernels, it says so.
    assert "no 16-bit float kernels" in plan_for(16, 16, depth=1, merges=(0,),
                                                  caps=NO_HALF).label
    assert "nearest to w4a8" in plan_for(4, 8, depth=1, merges=(0,), caps=OV).label
    assert "nearest to w3" not in plan_for(4, 32, depth=1, merges=(0,), caps=OV).label
    assert "dequantized" in plan_for(8, 32, depth=1, merges=(0,), caps=NO_HALF).label


def _tiny() -> tuple[SearchSpace, ViTSupernet]:
    space = SearchSpace.from_dict(TINY_SPACE)
    torch.manual_seed(0)
    net = ViTSupernet(space.supernet, in_chans=1, num_classes=4, space=space).eval()
    with torch.no_grad():  # like trained weights: no two norms or biases equal (the exporter
        for p in net.parameters():  # would store equal initializers once)
            p.add_(0.02 * torch.randn_like(p))
    return space, net


def _models(net: ViTSupernet, cfg: JointConfig, w: int, a: int
            ) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    sub = net.extract(cfg).eval()
    q = None
    if w < 16:
        q = quant.quantize_module(sub, w_bits=w, a_bits=a, io_bits=8,
                                  io_names=("patch_embed", "head"))
        quant.calibrate(q, [torch.randn(8, 1, 32, 32)])
    return sub, q


CFG = JointConfig(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2.0, tome_r=(2, 1))


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
@pytest.mark.parametrize(("w", "a"), SAMPLE)
def test_deployed_graph_runs_what_the_plan_and_the_costs_say(
        runtime: str, w: int, a: int, tmp_path: Path) -> None:
    """Each part the costs charge (every linear and attention matmul) runs in the executed
    graph at the dtype it is charged at; model_bytes is within 5% of the deployed weights; and
    the deployed graph computes what the accuracy model computes."""
    space, net = _tiny()
    rt = get_runtime(runtime)
    caps = rt.caps()
    plan = plan_for(w, a, depth=CFG.depth, merges=CFG.merges, caps=caps)
    sub, q = _models(net, CFG, w, a)
    path = export_onnx(plan, sub, q, torch.zeros(1, 1, 32, 32), tmp_path / "model.onnx")
    files = rt.save_native(path, plan, tmp_path)
    executed = rt.executed(path, plan, threads=1)
    charged = [lc for lc in layer_costs(CFG, space.supernet, plan, in_chans=1, num_classes=4)
               if lc.part.kind in ("linear", "matmul")]
    assert len(charged) == 2 + 6 * CFG.depth
    for lc in charged:
        assert executed[lc.name][0] == lc.part.compute, lc.name
    model_bytes = size_costs(CFG, space.supernet, plan, in_chans=1, num_classes=4)["model_bytes"]
    check = check_deployment(plan, executed, model_bytes=model_bytes,
                             deployed=rt.weight_bytes(files), runtime_label=plan.label,
                             runtime_name=rt.name, weight_storage=caps.weight_storage)
    # (less a tiny layer whose weights this CPU's OpenVINO converts at load: helpers)
    assert not unexplained_problems(check["problems"], sub, plan), check["problems"]
    if runtime == "openvino" and plan.kind == "weight-only":  # the one-layer probe agrees
        from jointopt.runtimes import OpenVinoRuntime

        shapes = linear_shapes(sub)
        assert len(shapes) == 2 + 4 * CFG.depth
        for name, (k, n) in shapes.items():
            part = plan.part(name)
            kept = executed[name][1] == part.weight
            assert kept == OpenVinoRuntime.keeps_compressed(k, n, part.weight,
                                                            plan.float_dtype), name
    # Without merging (in 16-bit float a near-tie between two merge candidates may go either
    # way) the deployed graph computes what the accuracy model computes.
    flat = dataclasses.replace(CFG, tome_r=0)
    plan0 = plan_for(w, a, depth=flat.depth, merges=flat.merges, caps=caps)
    sub0, q0 = _models(net, flat, w, a)
    path0 = export_onnx(plan0, sub0, q0, torch.zeros(1, 1, 32, 32), tmp_path / "flat.onnx")
    x = torch.randn(8, 1, 32, 32)
    got = torch.from_numpy(rt.load(path0, plan0, threads=1, batch=8)(x.numpy()))
    with torch.no_grad():
        want = accuracy_model(plan0, sub0, q0)(x)
    tol = 0.05 if plan.float_dtype != "f32" or plan.kind == "int8" else 1e-4
    assert (got - want).abs().max() <= tol * max(1.0, float(want.abs().max()))


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_side_by_side_loads_give_one_runner_per_batch_that_computes_the_model(
        runtime: str, tmp_path: Path) -> None:
    """``load_batches`` (what the latency model times) compiles each batch size once, side by
    side, and each runner computes what a plain ``load`` of that batch size computes."""
    _, net = _tiny()
    rt = get_runtime(runtime)
    flat = dataclasses.replace(CFG, tome_r=0)
    plan = plan_for(8, 8, depth=flat.depth, merges=flat.merges, caps=rt.caps())
    sub, q = _models(net, flat, 8, 8)
    path = export_onnx(plan, sub, q, torch.zeros(1, 1, 32, 32), tmp_path / "model.onnx")
    runners = load_batches(rt, path, plan, threads=1, batches=(1, 6, 1))
    assert sorted(runners) == [1, 6]
    x = torch.randn(6, 1, 32, 32).numpy()
    for b in (1, 6):
        want = rt.load(path, plan, threads=1, batch=b)(x[:b])
        got = runners[b](x[:b])
        assert got.shape == (b, 4)
        assert abs(got - want).max() <= 1e-5
    if runtime == "openvino":  # compiled for its own batch size (ONNX Runtime's is dynamic)
        with pytest.raises(RuntimeError):
            runners[1](x)


def test_the_check_catches_a_graph_that_does_not_follow_the_plan(tmp_path: Path) -> None:
    space, net = _tiny()
    rt = get_runtime("openvino")
    plan = plan_for(8, 8, depth=CFG.depth, merges=CFG.merges, caps=rt.caps())
    sub, q = _models(net, CFG, 32, 32)
    fp32 = plan_for(32, 32, depth=CFG.depth, merges=CFG.merges, caps=rt.caps())
    path = export_onnx(fp32, sub, q, torch.zeros(1, 1, 32, 32), tmp_path / "model.onnx")
    executed = rt.executed(path, plan, threads=1)  # a float graph checked against int8's plan
    check = check_deployment(plan, executed, model_bytes=1000, deployed=2000,
                             runtime_label="onnxruntime-int8", runtime_name="openvino",
                             weight_storage=("i8", "i4"))
    assert not check["ok"]
    text = " ".join(check["problems"])
    assert "blocks.0.qkv: runs in f32, plan says i8" in text
    assert "model_bytes" in text and "is not openvino" in text


def test_changing_one_part_moves_bitops_and_energy_by_its_share() -> None:
    space, _ = _tiny()
    plan = plan_for(32, 32, depth=CFG.depth, merges=CFG.merges, caps=OV)
    fc1 = plan.part("blocks.1.fc1")
    changed = dataclasses.replace(plan, parts=tuple(
        dataclasses.replace(p, compute="i8", weight="i8", weight_bits=8, act_bits=8)
        if p is fc1 else p for p in plan.parts))
    before = size_costs(CFG, space.supernet, plan, in_chans=1, num_classes=4)
    after = size_costs(CFG, space.supernet, changed, in_chans=1, num_classes=4)
    lc = next(x for x in layer_costs(CFG, space.supernet, plan, in_chans=1, num_classes=4)
              if x.name == "blocks.1.fc1")
    assert before["macs"] == after["macs"]
    assert before["bitops"] - after["bitops"] == lc.macs * (32 * 32 - 8 * 8)
    # int8 weights store 1 byte each plus a float scale and an int8 zero point per channel,
    # and the input's scale and zero point
    assert before["model_bytes"] - after["model_bytes"] == int(
        lc.weights * 3 - lc.out_features * 5 - 5)

    def energy(p: PrecisionPlan, model_bytes: int) -> float:
        ctx = EvalContext(cfg=CFG, shape=space.supernet, in_chans=1, num_classes=4, io_bits=8,
                          batch_size=8, plan=p, metrics={"model_bytes": model_bytes})
        return modelled_energy_mj(ctx)

    delta_pj = lc.macs * (mac_energy_pj("f32") - mac_energy_pj("i8"))
    delta_pj += lc.act_in * (DTYPE_BYTES["f32"] - DTYPE_BYTES["i8"]) * 1.25  # SRAM reads
    delta_pj += (before["model_bytes"] - after["model_bytes"]) * 160.0 / 8  # DRAM, per batch
    got = energy(plan, before["model_bytes"]) - energy(changed, after["model_bytes"])
    assert got == pytest.approx(delta_pj * 1e-9, rel=1e-9)
