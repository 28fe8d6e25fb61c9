"""Costs of any float ``nn.Module`` counted the way jointopt counts its own subnets.

For references outside the search space (a timm DeiT or ResNet), so that a ratio between a
reference and a jointopt config compares like with like:

* ``params``: parameter count; ``model_bytes`` = params x 4 (fp32).
* ``macs``: ``torch.utils.flop_counter.FlopCounterMode`` flops / 2 at batch 1.
* ``bitops`` = macs x 32 x 32.
* ``act_elements``: activation elements read and written by every matrix product (linear,
  convolution, batched matmul, fused attention) and every norm, softmax and GELU, weights
  excluded: the quantity :mod:`jointopt.cost.energy` charges SRAM traffic for.
* ``elementwise``: elements of each norm, softmax and GELU, charged per element like
  jointopt's own (``jointopt.cost.size.ELEMENTWISE_OPS``).
* modelled energy with the same Horowitz 45 nm figures as :class:`~jointopt.cost.energy.Horowitz45`:
  float32 MACs, weights from DRAM once per batch, activations through SRAM.
* latency and throughput: exported with ``torch.onnx.export`` and timed on the study's runtime
  at float32 exactly as :class:`~jointopt.cost.latency.MeasuredLatency` times an fp32 config
  (same runtime options, thread pinning, lock, run counts).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from jointopt.cost.energy import (
    DRAM_PJ_PER_BYTE,
    SRAM_PJ_PER_BYTE,
    elementwise_pj,
    mac_energy_pj,
)

__all__ = ["count_macs", "count_activation_io", "module_costs", "generic_energy_mj",
           "time_model"]

_aten = torch.ops.aten
_MATMUL_OPS = {_aten.mm.default, _aten.addmm.default, _aten.bmm.default,
               _aten.baddbmm.default, _aten.convolution.default}
_ELEMENTWISE_OPS = {_aten.native_layer_norm.default: "norm", _aten._softmax.default: "softmax",
                    _aten.gelu.default: "gelu"}
_SDPA_OPS = {getattr(_aten, n).default for n in (
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_attention_math",
    "_scaled_dot_product_cudnn_attention") if hasattr(_aten, n)}


def _example(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    p = next(model.parameters(), None)
    return torch.zeros(input_shape, dtype=p.dtype if p is not None else torch.float32)


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass (FlopCounterMode flops / 2), per image."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as fc:
        model(_example(model, input_shape))
    return int(fc.get_total_flops() // 2 // input_shape[0])


class _ActivationIO(TorchDispatchMode):
    """Sums activation elements in and out of matrix products and element-wise parts (weights
    skipped), and the elements each element-wise kind computes on."""

    def __init__(self, weight_storages: set[int]) -> None:
        super().__init__()
        self.weights = weight_storages
        self.elements = 0
        self.elementwise: dict[str, int] = {}

    def _act(self, t: Any) -> int:
        if not isinstance(t, torch.Tensor):
            return 0
        if t.untyped_storage().data_ptr() in self.weights:
            return 0
        return t.numel()

    def _ew(self, kind: str, n: int) -> None:
        self.elementwise[kind] = self.elementwise.get(kind, 0) + n
        self.elements += 2 * n  # read and written

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if func in _MATMUL_OPS:
            if func == _aten.convolution.default:
                ins = args[:1]  # input; weight and bias are parameters
            elif func in (_aten.addmm.default, _aten.baddbmm.default):
                ins = args[1:3]  # the first operand is the bias or accumulator
            else:
                ins = args[:2]
            self.elements += sum(self._act(a) for a in ins) + self._act(out)
        elif func in _ELEMENTWISE_OPS:
            self._ew(_ELEMENTWISE_OPS[func], args[0].numel())
        elif func in _SDPA_OPS:
            q, k, v = args[:3]
            b, h, n, _ = q.shape
            m = k.shape[-2]
            # q.k^T reads q, k and writes logits; softmax reads and writes them; softmax.v
            # reads them and v and writes the output (as jointopt.cost.size counts).
            self.elements += q.numel() + k.numel() + b * h * n * m
            self._ew("softmax", b * h * n * m)
            self.elements += b * h * n * m + v.numel() + q.numel()
        return out


@torch.no_grad()
def _activation_counts(model: nn.Module, input_shape: tuple[int, ...]) -> _ActivationIO:
    model.eval()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weights |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    x = _example(model, input_shape)
    with _ActivationIO(weights) as mode:
        model(x)
    return mode


def count_activation_io(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Activation elements read and written by the matrix products and element-wise parts of
    one image."""
    return int(_activation_counts(model, input_shape).elements // input_shape[0])


def generic_energy_mj(*, macs: int, act_elements: int, model_bytes: int, batch_size: int,
                      elementwise: dict[str, int] | None = None) -> float:
    """Horowitz-45nm energy per image (mJ) of a float32 model from its counts, with
    energy.py's constants: float32 MACs and element-wise work, activations (4 bytes) through
    SRAM, the weights read from DRAM once per batch of ``batch_size``."""
    pj = macs * mac_energy_pj("f32")
    pj += sum(n * elementwise_pj(kind, "f32") for kind, n in (elementwise or {}).items())
    pj += act_elements * 4.0 * SRAM_PJ_PER_BYTE
    pj += model_bytes * DRAM_PJ_PER_BYTE / max(1, batch_size)
    return pj * 1e-9


def module_costs(model: nn.Module, in_chans: int, img_size: int, *,
                 batch_size: int) -> dict[str, Any]:
    """params, macs, bitops, model_bytes, act_elements and modelled energy of an fp32 model."""
    shape = (1, in_chans, img_size, img_size)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, shape)
    counts = _activation_counts(model, shape)
    model_bytes = params * 4
    energy = {b: generic_energy_mj(macs=macs, act_elements=counts.elements,
                                   model_bytes=model_bytes, batch_size=b,
                                   elementwise=counts.elementwise) for b in (batch_size, 1)}
    return {"params": params, "macs": macs, "bitops": macs * 32 * 32,
            "model_bytes": model_bytes, "act_elements": counts.elements,
            "energy_mj": energy[batch_size], "energy_b1_mj": energy[1],
            "energy_batch": batch_size, "energy_source": "model:horowitz45 (generic counter)"}


def time_model(model: nn.Module, in_chans: int, img_size: int, *, batch_size: int,
               threads: int, runtime: str = "openvino", runs: int = 20, warmup: int = 5,
               cache: Any = None, key: str | None = None,
               export: Callable[[nn.Module, torch.Tensor, Path], Path] | None = None,
               max_foreign_load: float = 0.25) -> dict[str, Any]:
    """Batch-1 median latency and batch-``batch_size`` throughput of a float32 model on
    ``runtime``, measured like ``MeasuredLatency`` (same runtime options, lock, pinning, runs).

    With ``cache`` and ``key`` the result is stored in (and read from) the measurement cache;
    a timing taken on contended cores (see ``time_runner``) is returned flagged and not stored.
    """
    from jointopt import quant
    from jointopt.cost.latency import MeasureCache, machine_id, store_timing, time_runner
    from jointopt.precision import PrecisionPlan
    from jointopt.runtimes import get_runtime, load_batches

    rt = get_runtime(runtime)
    plan = PrecisionPlan.float32(rt.name)
    cache = cache or MeasureCache()
    full_key = None
    if key is not None:
        full_key = (f"{machine_id()}|{rt.name}{rt.version()}|{plan.label}|generic:{key}"
                    f"|c{in_chans}s{img_size}|b{batch_size}|t{threads}|n{runs}")
        hit = cache.get(full_key)
        if hit is not None:
            return {**hit, "latency_runtime": plan.label, "latency_cached": True}
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, in_chans, img_size, img_size)).astype(np.float32)
    xb = rng.standard_normal((batch_size, in_chans, img_size, img_size)).astype(np.float32)
    example = torch.zeros(1, in_chans, img_size, img_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = (export or quant.export_float_onnx)(model.eval(), example,
                                                    Path(tmp) / "model.onnx")
        runners = load_batches(rt, path, plan, threads=threads, batches=(1, batch_size))

        def run(x: np.ndarray) -> Any:
            return runners[len(x)](x)

        value = time_runner(run, x1, xb, cache=cache, threads=threads, runs=runs,
                            warmup=warmup, max_foreign_load=max_foreign_load)
    return store_timing(cache, full_key, value, plan.label)
