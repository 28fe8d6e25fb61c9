"""Energy per image: measured through RAPL where the machine exposes it, else modelled.

The analytic model follows Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, for a 45 nm process:

| operation | int8 | int32 | fp16 | fp32 |
|-----------|------|-------|------|------|
| add (pJ)  | 0.03 | 0.1   | 0.4  | 0.9  |
| mult (pJ) | 0.2  | 3.1   | 1.1  | 3.7  |

Each part is charged at the dtype its precision plan runs it in (:mod:`jointopt.precision`):
float32, 16-bit float (the fp16 column, an upper bound for bfloat16), or int8 with int32
accumulation; integer grids narrower than 8 bits run on 8-bit kernels and are charged as such.
Element-wise parts (norms, softmax, GELU) and the token merge are charged per element
(``jointopt.cost.size.ELEMENTWISE_OPS``). Memory:
weights are read from DRAM once per batch at about 160 pJ per byte (Horowitz: 1.3-2.6 nJ per
64-bit access); activations pass through SRAM at about 1.25 pJ per byte (10 pJ per 64-bit access
of an 8 KB SRAM). Reports call the result modelled energy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jointopt.cost.registry import EvalContext, register_cost_model
from jointopt.cost.size import ELEMENTWISE_OPS, LayerCost, layer_costs
from jointopt.precision import DTYPE_BYTES

__all__ = ["HOROWITZ_45NM_PJ", "mac_energy_pj", "elementwise_pj", "modelled_energy_mj",
           "rapl_available", "Horowitz45", "RaplEnergy", "DRAM_PJ_PER_BYTE", "SRAM_PJ_PER_BYTE"]

HOROWITZ_45NM_PJ: dict[str, dict[str, float]] = {
    "add": {"int8": 0.03, "int32": 0.1, "fp16": 0.4, "fp32": 0.9},
    "mult": {"int8": 0.2, "int32": 3.1, "fp16": 1.1, "fp32": 3.7},
}
DRAM_PJ_PER_BYTE = 160.0
SRAM_PJ_PER_BYTE = 1.25
# Horowitz lists fp16, not bfloat16; a bf16 multiplier (8-bit significand) is smaller than an
# fp16 one (11-bit), so the fp16 figures are an upper bound for bf16.
_FLOAT_KIND = {"f32": "fp32", "bf16": "fp16", "f16": "fp16"}


def mac_energy_pj(dtype: str) -> float:
    """Energy of one multiply-accumulate executed in ``dtype`` (``f32``, ``bf16``, ``f16``,
    ``i8``). Integer products accumulate in int32."""
    t = HOROWITZ_45NM_PJ
    if dtype in _FLOAT_KIND:
        kind = _FLOAT_KIND[dtype]
        return t["mult"][kind] + t["add"][kind]
    return t["mult"]["int8"] + t["add"]["int32"]


def elementwise_pj(kind: str, dtype: str) -> float:
    """Energy of one element of an element-wise part (``norm``, ``softmax``, ``gelu``,
    ``merge``) in ``dtype``."""
    adds, mults = ELEMENTWISE_OPS[kind]
    k = _FLOAT_KIND.get(dtype, "fp32")
    return adds * HOROWITZ_45NM_PJ["add"][k] + mults * HOROWITZ_45NM_PJ["mult"][k]


def _layer_pj(lc: LayerCost, float_dtype: str) -> float:
    """Compute and SRAM traffic of one part, per image."""
    p = lc.part
    pj = lc.macs * mac_energy_pj(p.compute)
    if p.kind in ("elementwise", "merge"):
        pj += lc.elements * elementwise_pj(p.op, p.compute)
    # An integer matmul reads 8-bit activations and writes float ones (dequantized output).
    out_dtype = float_dtype if p.compute == "i8" else p.compute
    pj += (lc.act_in * DTYPE_BYTES[p.compute] + lc.act_out * DTYPE_BYTES[out_dtype]) \
        * SRAM_PJ_PER_BYTE
    return pj


def modelled_energy_mj(ctx: EvalContext, batch_size: int | None = None) -> float:
    """Horowitz-45nm energy per image, in millijoules, at ``batch_size`` (default the
    context's throughput batch): every part at the dtype the plan runs it in, activations
    through SRAM, and the deployed weights read from DRAM once per batch."""
    assert ctx.plan is not None, "energy needs the config's precision plan"
    layers = layer_costs(ctx.cfg, ctx.shape, ctx.plan, in_chans=ctx.in_chans,
                         num_classes=ctx.num_classes)
    pj = sum(_layer_pj(lc, ctx.plan.float_dtype) for lc in layers)
    batch = batch_size or ctx.batch_size
    pj += ctx.metrics.get("model_bytes", 0) * DRAM_PJ_PER_BYTE / max(1, batch)
    return pj * 1e-9


@register_cost_model("energy", "horowitz45")
class Horowitz45:
    """Modelled energy (45 nm figures); ``energy_source`` says ``model:horowitz45``.

    ``energy_mj`` is per image at the study's throughput batch (``energy_batch``);
    ``energy_b1_mj`` is per image at batch 1, where the weights are read for every image.
    """

    def __call__(self, ctx: EvalContext) -> dict[str, Any]:
        return {"energy_mj": modelled_energy_mj(ctx), "energy_b1_mj": modelled_energy_mj(ctx, 1),
                "energy_batch": ctx.batch_size, "energy_source": "model:horowitz45"}


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
            deployed_runner,
            eval_threads,
            measurement_lock,
        )

        s = ctx.shape
        x = np.zeros((ctx.batch_size, ctx.in_chans, s.img_size, s.img_size), np.float32)
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            run = deployed_runner(ctx, Path(tmp), (ctx.batch_size,))
            run(x)  # warm-up outside the measured window
            with measurement_lock(MeasureCache(), eval_threads(ctx.settings)):
                e0 = _read_uj()
                for _ in range(self.runs):
                    run(x)
                e1 = _read_uj()
        if e1 <= e0:  # the counter wrapped: report the model rather than nonsense
            return Horowitz45()(ctx)
        model = Horowitz45()(ctx)
        return {**model, "energy_mj": (e1 - e0) / 1000.0 / (self.runs * ctx.batch_size),
                "energy_source": "rapl", "energy_model_mj": model["energy_mj"]}
