"""Energy per image: measured through RAPL where the machine exposes it, else modelled.

The analytic model follows Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, for a 45 nm process:

| operation | int8 | int32 | fp16 | fp32 |
|-----------|------|-------|------|------|
| add (pJ)  | 0.03 | 0.1   | 0.4  | 0.9  |
| mult (pJ) | 0.2  | 3.1   | 1.1  | 3.7  |

Integer multipliers scale with the product of the operand widths (the square of the bit-width for
equal operands) from the int8 figure, adders linearly; products accumulate in int32. Memory:
weights are read from DRAM once per batch at about 160 pJ per byte (Horowitz: 1.3-2.6 nJ per
64-bit access); activations pass through SRAM at about 1.25 pJ per byte (10 pJ per 64-bit access
of an 8 KB SRAM). Reports call the result modelled energy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jointopt.cost.registry import EvalContext, register_cost_model
from jointopt.cost.size import LayerCost, layer_costs

__all__ = ["HOROWITZ_45NM_PJ", "mac_energy_pj", "modelled_energy_mj", "rapl_available",
           "Horowitz45", "RaplEnergy"]

HOROWITZ_45NM_PJ: dict[str, dict[str, float]] = {
    "add": {"int8": 0.03, "int32": 0.1, "fp16": 0.4, "fp32": 0.9},
    "mult": {"int8": 0.2, "int32": 3.1, "fp16": 1.1, "fp32": 3.7},
}
DRAM_PJ_PER_BYTE = 160.0
SRAM_PJ_PER_BYTE = 1.25


def _float_bits(bits: int) -> str:
    return "fp16" if bits == 16 else "fp32"


def mac_energy_pj(w_bits: int, a_bits: int) -> float:
    """Energy of one multiply-accumulate with operands of these widths."""
    t = HOROWITZ_45NM_PJ
    if w_bits >= 16 or a_bits >= 16:
        # A float operand makes the product float (weight-only quantization dequantizes).
        kind = _float_bits(min(b for b in (w_bits, a_bits) if b >= 16))
        return t["mult"][kind] + t["add"][kind]
    mult = t["mult"]["int8"] * (w_bits * a_bits) / 64.0
    return mult + t["add"]["int32"]


def modelled_energy_mj(ctx: EvalContext) -> float:
    """Horowitz-45nm energy per image, in millijoules, at the context's batch size."""
    layers = layer_costs(ctx.cfg, ctx.shape, in_chans=ctx.in_chans,
                         num_classes=ctx.num_classes, io_bits=ctx.io_bits)
    pj = 0.0
    act_elems = 0.0
    for lc in layers:
        pj += lc.macs * mac_energy_pj(lc.w_bits, lc.a_bits)
        act_elems += _io_elements(lc, ctx)
    # Integer activations are stored at their width; float ones at the config's float width.
    a_bytes = ctx.cfg.a_bits / 8.0 if ctx.cfg.a_bits < 16 else min(ctx.cfg.a_bits,
                                                                   max(ctx.cfg.w_bits, 16)) / 8.0
    pj += act_elems * a_bytes * SRAM_PJ_PER_BYTE
    model_bytes = ctx.metrics.get("model_bytes", 0)
    pj += model_bytes * DRAM_PJ_PER_BYTE / max(1, ctx.batch_size)
    return pj * 1e-9


def _io_elements(lc: LayerCost, ctx: EvalContext) -> float:
    """Activation elements read and written by one product (per image)."""
    if lc.weights == 0:  # attention: q, k, v read, logits written and read, output written
        return _attention_elements(lc, ctx)
    out_features = _out_features(lc, ctx)
    in_features = lc.weights // out_features
    tokens = lc.macs // lc.weights
    return tokens * (in_features + out_features)


def _out_features(lc: LayerCost, ctx: EvalContext) -> int:
    cfg = ctx.cfg
    if lc.name == "head":
        return ctx.num_classes
    if lc.name == "patch_embed.proj":
        return cfg.embed_dim
    i = int(lc.name.split(".")[1])
    hd = ctx.shape.head_dim
    return {"qkv": 3 * cfg.heads[i] * hd, "proj": cfg.embed_dim, "fc1": cfg.mlp_dims()[i],
            "fc2": cfg.embed_dim}[lc.name.split(".")[2]]


def _attention_elements(lc: LayerCost, ctx: EvalContext) -> float:
    i = int(lc.name.split(".")[1])
    h, hd = ctx.cfg.heads[i], ctx.shape.head_dim
    n = (lc.macs / (2 * h * hd)) ** 0.5  # macs = 2 h n^2 hd
    return 3 * n * h * hd + 2 * h * n * n + n * h * hd


@register_cost_model("energy", "horowitz45")
class Horowitz45:
    """Modelled energy (45 nm figures); ``energy_source`` says ``model:horowitz45``."""

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        return {"energy_mj": modelled_energy_mj(ctx), "energy_source": "model:horowitz45"}


RAPL = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def rapl_available() -> bool:
    return RAPL.is_file() and os.access(RAPL, os.R_OK)


def _read_uj() -> int:
    return int(RAPL.read_text())


@register_cost_model("energy", "rapl")
class RaplEnergy:
    """Package energy read from RAPL around 10 batch runs on the latency runtime.

    RAPL counts the whole package, so this is energy per image including idle and other
    processes' share; run it on a quiet machine. Without a readable counter it falls back to
    the Horowitz model and says so in ``energy_source``.
    """

    runs = 10

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        if not rapl_available():
            return Horowitz45()(ctx)
        import tempfile

        import numpy as np

        from jointopt.cost.latency import (
            MeasureCache,
            OnnxRuntimeLatency,
            measurement_lock,
            runtime_for,
        )

        runtime, _ = runtime_for(ctx.cfg)
        lat = OnnxRuntimeLatency()
        s = ctx.shape
        x = np.zeros((ctx.batch_size, ctx.in_chans, s.img_size, s.img_size), np.float32)
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            run = lat._runner(ctx, runtime, Path(tmp))
            run(x)  # warm-up outside the measured window
            with measurement_lock(MeasureCache(), lat._threads(ctx)):
                e0 = _read_uj()
                for _ in range(self.runs):
                    run(x)
                e1 = _read_uj()
        if e1 <= e0:  # the counter wrapped: report the model rather than nonsense
            return Horowitz45()(ctx)
        return {"energy_mj": (e1 - e0) / 1000.0 / (self.runs * ctx.batch_size),
                "energy_source": "rapl"}
