"""The integer ONNX graph of a calibrated Brevitas model, built from a float export.

Brevitas's QCDQ export (``export_onnx_qcdq``) traces every quantizer of the model through its
export handlers: 0.7 to 1.0 s for a depth-4 to depth-6 subnet on this project's 2-core VM,
against about 0.25 s for a float export of the same model (TorchScript tracing about 60% of it).
An evaluation exports every integer config it measures, so :func:`build_qdq` writes the same
graph from the float export instead:

1. the model is exported with each :class:`~jointopt.quant.QuantInputLinear` standing in as a
   plain ``nn.Linear`` holding the same float weight and (bias-corrected) bias;
2. each stand-in's ``MatMul`` / ``Gemm`` is found by its weight (the exporter folds it into an
   initializer: ``W`` transposed for ``MatMul``, ``W`` for ``Gemm`` with ``transB``);
3. the weight becomes Brevitas's integer weight (``quant_weight().int()``, narrow range,
   per-output-channel scale, zero point 0) behind a ``DequantizeLinear``, and, where activations
   are quantized, the matmul's input passes ``QuantizeLinear -> DequantizeLinear`` with the
   calibrated per-tensor scale (signed, zero point 0; below 8 bits a float ``Clip`` to the grid
   first), named as Brevitas names them, so :func:`jointopt.runtimes.part_of` finds the layer;
4. :func:`jointopt.quant._integerize` then rewrites it exactly as it rewrites a QCDQ export
   (QGemm's int32 bias, weight-only matmuls, int4 packing).

A model this cannot map (another Brevitas layer, a weight the exporter did not fold, two layers
with byte-equal weights) raises :class:`Unmappable`; :func:`jointopt.quant.export_int_onnx`
then uses Brevitas's own export.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from onnx import helper, numpy_helper
from torch import Tensor, nn

__all__ = ["Unmappable", "build_qdq"]


class Unmappable(Exception):
    """The float export cannot carry this model's quantization (see the module docstring)."""


@contextmanager
def _float_stand_ins(model: nn.Module, layers: Mapping[str, Any]) -> Iterator[None]:
    """Swap each quantized layer for an ``nn.Linear`` sharing its weight and bias, then back."""
    def put(name: str, module: nn.Module) -> None:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, module)

    for name, q in layers.items():
        lin = torch.nn.utils.skip_init(nn.Linear, q.in_features, q.out_features,
                                       bias=q.bias is not None)
        lin.weight = q.weight
        lin.bias = q.bias
        put(name, lin)
    try:
        yield
    finally:
        for name, q in layers.items():
            put(name, q)


def _weight_scale(q: Any) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight [out, in], float32 scale [out]) as Brevitas quantizes the layer."""
    proxy = q.weight_quant
    qw = q.quant_weight()
    if not (qw.signed and proxy.is_narrow_range) or bool(torch.any(qw.zero_point != 0)):
        raise Unmappable("weight quantizer is not signed narrow-range with zero point 0")
    scale = qw.scale.detach().reshape(-1).cpu().numpy().astype(np.float32)
    if scale.size != q.out_features:
        raise Unmappable("weight scale is not per output channel")
    return qw.int().detach().cpu().numpy().astype(np.int8), scale


def _act_scale(q: Any) -> tuple[np.float32, int] | None:
    """(float32 scale, bits) of the layer's input quantizer, or None (float input)."""
    ident = q.input_identity
    if ident is None or not ident.act_quant.is_quant_enabled:
        return None
    qa = ident.act_quant(torch.zeros(1, q.in_features, device=q.weight.device))
    if not qa.signed or ident.act_quant.is_narrow_range or float(qa.zero_point) != 0:
        raise Unmappable("input quantizer is not signed full-range with zero point 0")
    return np.float32(qa.scale.detach().cpu().reshape(())), int(qa.bit_width)


def build_qdq(model: nn.Module, example: Tensor, export_kwargs: dict[str, Any]) -> onnx.ModelProto:
    """The QCDQ-form graph of calibrated ``model`` (see the module docstring), to be passed
    to ``quant._integerize``. Raises :class:`Unmappable` where it cannot."""
    from jointopt.quant import QuantInputLinear

    layers = {n: m for n, m in model.named_modules() if isinstance(m, QuantInputLinear)}
    if any(isinstance(m, QuantWeightBiasInputOutputLayer) and n not in layers
           for n, m in model.named_modules()):
        raise Unmappable("a Brevitas layer other than QuantInputLinear")
    by_weight: dict[bytes, str] = {}
    for name, q in layers.items():
        key = q.weight.detach().cpu().numpy().astype(np.float32).tobytes()
        if key in by_weight:
            raise Unmappable(f"{by_weight[key]} and {name} hold the same weight")
        by_weight[key] = name
    was_training = model.training
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.onnx"
        try:
            with _float_stand_ins(model, layers), torch.no_grad():
                torch.onnx.export(model.eval(), (example,), str(path), dynamo=False,
                                  **export_kwargs)
        finally:
            model.train(was_training)
        proto = onnx.load(str(path))
    _constants_to_initializers(proto.graph)
    _insert_qdq(proto.graph, layers, by_weight)
    return proto


def _constants_to_initializers(g: onnx.GraphProto) -> None:
    """Tensor-valued ``Constant`` nodes as initializers, as in Brevitas's export (a runtime's
    stored weight bytes count initializers)."""
    keep = []
    for node in g.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) \
            if node.op_type == "Constant" and len(node.attribute) == 1 else None
        if value is None:
            keep.append(node)
            continue
        value.name = node.output[0]
        g.initializer.append(value)
    del g.node[:]
    g.node.extend(keep)


def _insert_qdq(g: onnx.GraphProto, layers: dict[str, Any], by_weight: dict[bytes, str]) -> None:
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    new_nodes: list[onnx.NodeProto] = []
    found: set[str] = set()

    def init(array: np.ndarray | np.generic, name: str) -> str:
        a = np.asarray(array)  # scalars stay 0-d (np.ascontiguousarray makes them 1-d)
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(a) if a.ndim else a,
                                                     name))
        return name

    for node in list(g.node):
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        b = node.input[1]
        while b in prod and prod[b].op_type == "Identity":
            b = prod[b].input[0]
        if b not in inits:
            continue
        w = numpy_helper.to_array(inits[b])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        trans = node.op_type == "MatMul" or not attrs.get("transB", 0)  # initializer is W.T
        if w.ndim != 2 or w.dtype != np.float32:
            continue
        name = by_weight.get(np.ascontiguousarray(w.T if trans else w).tobytes())
        if name is None:
            continue
        if name in found:
            raise Unmappable(f"{name} is called more than once")
        if node.op_type == "Gemm" and (attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1
                                       or attrs.get("beta", 1.0) != 1):
            raise Unmappable(f"{node.name}: a Gemm with transA, alpha or beta")
        found.add(name)
        q = layers[name]
        prefix = node.name.rsplit("/", 1)[0]
        w_int, w_scale = _weight_scale(q)
        wq = f"{prefix}/weight_quant/export_handler"
        new_nodes.append(helper.make_node("DequantizeLinear", [
            init(w_int.T if trans else w_int, f"{wq}/int_weight"),
            init(w_scale, f"{wq}/scale"),
            init(np.zeros(w_scale.shape, np.int8), f"{wq}/zero_point")],
            [f"{wq}/DequantizeLinear_output_0"], name=f"{wq}/DequantizeLinear",
            axis=1 if trans else 0))
        node.input[1] = f"{wq}/DequantizeLinear_output_0"
        act = _act_scale(q)
        if act is None:
            continue
        scale, bits = act
        aq = f"{prefix}/input_identity/act_quant/export_handler"
        x = node.input[0]
        if bits < 8:  # values on the low-bit grid: a float Clip, then int8 containers
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            new_nodes.append(helper.make_node("Clip", [
                x, init(np.float32(lo) * scale, f"{aq}/clip_lo"),
                init(np.float32(hi) * scale, f"{aq}/clip_hi")], [f"{aq}/Clip_output_0"],
                name=f"{aq}/Clip"))
            x = f"{aq}/Clip_output_0"
        s, z = init(np.asarray(scale), f"{aq}/scale"), init(np.int8(0), f"{aq}/zero_point")
        new_nodes.append(helper.make_node("QuantizeLinear", [x, s, z],
                                          [f"{aq}/QuantizeLinear_output_0"],
                                          name=f"{aq}/QuantizeLinear"))
        new_nodes.append(helper.make_node("DequantizeLinear",
                                          [f"{aq}/QuantizeLinear_output_0", s, z],
                                          [f"{aq}/DequantizeLinear_output_0"],
                                          name=f"{aq}/DequantizeLinear"))
        node.input[0] = f"{aq}/DequantizeLinear_output_0"
    missing = sorted(set(layers) - found)
    if missing:
        raise Unmappable(f"no matmul with the weight of {', '.join(missing)}")
    g.node.extend(new_nodes)  # quant._integerize sorts the graph
