"""The deployed model of a config, built from its precision plan.

One plan gives three things that must agree:

* :func:`accuracy_model`: the PyTorch model accuracy is computed with (float32, a 16-bit float
  copy, the calibrated Brevitas model, or float weights dequantized from Brevitas's integer
  grid);
* :func:`export_onnx`: the ONNX graph the runtime loads (float, QDQ int8, or integer weights
  kept in the graph for weight-only plans), always with a float32 input;
* :func:`check_deployment`: the dtypes the runtime's optimized graph executes, the bytes of its
  deployed weight files and its name, compared with the plan.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from jointopt.precision import PrecisionPlan

__all__ = ["accuracy_model", "export_onnx", "check_deployment", "deployed_bytes",
           "TORCH_DTYPES"]

#: The parts whose executed dtype is checked: everything that multiplies (a conv stem's
#: convolutions, linear layers, attention matmuls).
CHECKED_KINDS = ("conv", "linear", "matmul")
TORCH_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


class _CastModel(nn.Module):
    """A model run in a 16-bit float dtype, taking and returning float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = copy.deepcopy(model).to(dtype).eval()
        self.dtype = dtype

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x.to(self.dtype)).float()


def dequantized(quant_model: nn.Module) -> nn.Module:
    """A float copy of a weight-only Brevitas model: each quantized Linear becomes an
    ``nn.Linear`` holding its dequantized integer weights (what the runtime multiplies)."""
    from brevitas.nn import QuantLinear

    out = copy.deepcopy(quant_model).eval()
    targets = [(n, m) for n, m in out.named_modules() if isinstance(m, QuantLinear)]
    for name, q in targets:
        lin = nn.Linear(q.in_features, q.out_features, bias=q.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(q.quant_weight().value.detach())
            if q.bias is not None:
                lin.bias.copy_(q.bias.detach())
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, child, lin)
    return out


def accuracy_model(plan: PrecisionPlan, float_model: nn.Module,
                   quant_model: nn.Module | None) -> nn.Module:
    """The PyTorch model that computes like the deployed graph of ``plan``."""
    kind = plan.kind
    if kind == "int8":
        assert quant_model is not None, "an integer plan needs the calibrated Brevitas model"
        return quant_model
    base = float_model
    if kind == "weight-only":
        assert quant_model is not None, "a weight-only plan needs the Brevitas model"
        base = dequantized(quant_model)
    dtype = TORCH_DTYPES[plan.float_dtype]
    return base if dtype == torch.float32 else _CastModel(base, dtype)


def export_onnx(plan: PrecisionPlan, float_model: nn.Module, quant_model: nn.Module | None,
                example: Tensor, path: str | Path, *, via: str = "float") -> Path:
    """The ONNX graph of ``plan`` (float32 input; the runtime applies the inference precision).
    ``via``: how an integer graph is built (``quant.export_int_onnx``)."""
    from jointopt import quant

    if plan.kind == "float":
        return quant.export_float_onnx(float_model, example, path)
    assert quant_model is not None
    pack = any(p.weight == "i4" for p in plan.linear_parts())
    return quant.export_int_onnx(quant_model, example, path, pack_int4=pack, via=via)


def deployed_bytes(files: list[Path]) -> int:
    return sum(Path(f).stat().st_size for f in files)


def check_deployment(plan: PrecisionPlan, executed: dict[str, tuple[str, str | None]], *,
                     model_bytes: int, deployed: int, runtime_label: str,
                     runtime_name: str, weight_storage: tuple[str, ...]) -> dict[str, Any]:
    """Compare what ran with the plan. Returns ``{"ok": bool, "problems": [...], ...}``.

    Each convolution, linear and attention-matmul part must appear in the executed graph with
    the plan's compute dtype; a linear's weight operand must be the plan's stored dtype where
    the runtime decompresses weights inside its kernel, else the compute dtype (float weights,
    a conv stem's included, are converted at load); ``model_bytes`` must be within 5% of the
    deployed weight files; and the runtime name must be the one that produced the files.
    """
    problems = []
    for p in plan.parts:
        if p.kind not in CHECKED_KINDS:
            continue
        got = executed.get(p.name)
        if got is None:
            problems.append(f"{p.name}: not found in the executed graph")
            continue
        compute, weight = got
        if compute != p.compute:
            problems.append(f"{p.name}: runs in {compute}, plan says {p.compute}")
        if p.kind in ("linear", "conv") and weight is not None:
            if (p.weight_only and p.weight in weight_storage) or p.compute == "i8":
                want = {p.weight}
            else:  # float weights: converted at load, or in the kernel (f32 operand)
                want = {p.compute, "f32"}
            if weight not in want:
                problems.append(f"{p.name}: weight operand {weight}, plan says "
                                f"{'/'.join(sorted(str(w) for w in want))}")
    ratio = model_bytes / deployed if deployed else float("nan")
    if not 0.95 <= ratio <= 1.05:
        problems.append(f"model_bytes {model_bytes} is {ratio:.3f}x the deployed {deployed}")
    if not runtime_label.startswith(runtime_name + "-"):
        problems.append(f"latency_runtime {runtime_label!r} is not {runtime_name}")
    return {"ok": not problems, "problems": problems, "model_bytes_ratio": ratio,
            "parts_checked": sum(1 for p in plan.parts if p.kind in CHECKED_KINDS)}
