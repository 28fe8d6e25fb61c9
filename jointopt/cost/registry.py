"""Registries of cost models, so a user can add a target device.

A cost model turns an :class:`EvalContext` into metric values. Register one with::

    @register_cost_model("latency", "my-npu")
    class MyNpuLatency:
        def __call__(self, ctx: EvalContext) -> dict[str, Any]:
            return {"latency_ms": ..., "throughput_ips": ..., "latency_runtime": "my-npu"}

and name it in the study (``evaluate: {latency: my-npu}``). ``ctx.plan`` says what each part
of the config runs in; a device with its own kernels registers a runtime too
(:func:`jointopt.runtimes.register_runtime`) so the plan describes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn

from jointopt.precision import PrecisionPlan
from jointopt.space import JointConfig, SupernetShape

__all__ = ["CostModel", "EvalContext", "register_cost_model", "get_cost_model", "cost_models"]


@dataclass
class EvalContext:
    """What a cost model may look at for one config.

    Args:
        cfg: the joint config.
        shape: the supernet's shape (patches, head_dim).
        in_chans, num_classes: input and output widths.
        io_bits: bits of the patch embedding and head (at least the config's).
        batch_size: the throughput batch size.
        float_model: the extracted float subnet (eval mode); None until :meth:`models` builds
            it, where the evaluation reused a known accuracy and left it to be built.
        quant_model: the calibrated fake-quantized subnet for integer configs, else None.
        metrics: metrics computed so far (size costs come first, so energy can use them).
        workdir: a scratch folder for exported models.
        settings: the study's evaluation settings.
        plan: the config's precision plan on the study's runtime (what every part runs in).
    """

    cfg: JointConfig
    shape: SupernetShape
    in_chans: int
    num_classes: int
    io_bits: int
    batch_size: int
    float_model: nn.Module | None = None
    quant_model: nn.Module | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    settings: Any = None
    plan: PrecisionPlan | None = None
    build: Callable[[], tuple[nn.Module, nn.Module | None]] | None = None

    def models(self) -> tuple[nn.Module | None, nn.Module | None]:
        """``(float_model, quant_model)``, built on first use if the evaluation left them to
        ``build`` (a cost model that exports or runs the model calls this)."""
        if self.float_model is None and self.build is not None:
            self.float_model, self.quant_model = self.build()
            self.build = None
        return self.float_model, self.quant_model


@runtime_checkable
class CostModel(Protocol):
    """Turns a context into metric values (a dict of DESIGN.md metric keys)."""

    def __call__(self, ctx: EvalContext) -> dict[str, Any]: ...


_REGISTRY: dict[tuple[str, str], Callable[[], CostModel]] = {}


def register_cost_model(kind: str, name: str) -> Callable[[type], type]:
    """Class decorator registering a cost model of ``kind`` (size, latency, energy)."""

    def deco(cls: type) -> type:
        _REGISTRY[(kind, name)] = cls
        return cls

    return deco


def cost_models(kind: str) -> list[str]:
    return sorted(n for k, n in _REGISTRY if k == kind)


def get_cost_model(kind: str, name: str) -> CostModel:
    from jointopt.errors import UserError

    if (kind, name) not in _REGISTRY:
        raise UserError(f"evaluate.{kind}={name!r}: unknown {kind} model "
                        f"(registered: {', '.join(cost_models(kind)) or 'none'})")
    return _REGISTRY[(kind, name)]()
