"""Integer fake quantization (Brevitas) and an ONNX export that ONNX Runtime runs as int8.

:func:`quantize_module` swaps every ``nn.Linear`` for a :class:`QuantInputLinear`: a Brevitas
``QuantLinear`` (signed, narrow-range, per-output-channel float scale, zero-point 0) whose input
first passes its own ``QuantIdentity`` (signed, per-tensor). :func:`calibrate` runs Brevitas
calibration then bias correction. :func:`export_int_onnx` exports with ``export_onnx_qcdq`` and
rewrites the QCDQ graph into the shape ONNX Runtime's QDQ selectors fuse, so that the optimized
graph runs ``MatMulIntegerToFloat`` (uint8 x int8 MLAS kernels) instead of float MatMul/Gemm:

* a weight ``int8 initializer -> Clip -> DequantizeLinear(axis 0) -> Transpose`` becomes
  ``int8 initializer (already transposed and clipped) -> DequantizeLinear(axis 1)``;
* a ``Gemm`` (Linear on 2-D input, e.g. the head) gets its float bias as an int32 initializer
  + ``DequantizeLinear`` with scale ``input_scale * weight_scale`` (ORT fuses QGemm), and the
  rounding remainder of the bias as a float ``Add`` after it;
* an activation ``QuantizeLinear -> Clip -> DequantizeLinear`` (bits < 8) becomes
  ``float Clip -> QuantizeLinear -> DequantizeLinear`` (same values, no node between Q and DQ);
* a dequantized int32 bias, or a weight whose MatMul input is not quantized (weight-only
  configs), is folded into a float initializer.

ONNX Runtime has int8 kernels only: bit-widths below 8 are exported in int8 containers whose
values stay on the low-bit grid, so they run at int8 speed (runtime :data:`INT8_RUNTIME`).
"""

from __future__ import annotations

import collections
import copy
import heapq
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.version_converter
import torch
from brevitas.export import export_onnx_qcdq
from brevitas.graph.calibrate import bias_correction_mode, calibration_mode
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjector
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat
from onnx import helper, numpy_helper
from torch import Tensor, nn

from jointopt.errors import field_error

__all__ = [
    "INT8_RUNTIME", "INTEGER_MATMUL_OPS", "SUPPORTED_BITS", "QuantInputLinear", "calibrate",
    "export_float_onnx", "export_int_onnx", "integer_ops", "quantize_module"]

SUPPORTED_BITS = (2, 3, 4, 6, 8)
FLOAT_WEIGHT_BITS = 16  # w_bits >= this: float model, returned unchanged
FLOAT_ACT_BITS = 16  # a_bits >= this means float activations (weight-only quantization)
INT8_RUNTIME = "onnxruntime-int8"
OPSET = 17
INTEGER_MATMUL_OPS = frozenset({"QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm",
                                "DynamicQuantizeMatMul", "QAttention"})
_EXPORT_KWARGS: dict[str, Any] = dict(
    opset_version=OPSET, input_names=["input"], output_names=["logits"], do_constant_folding=True,
    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


class QuantInputLinear(QuantLinear):
    """A ``QuantLinear`` whose input passes ``input_identity`` (a ``QuantIdentity``) first.

    Parameter names (``weight``, ``bias``) are those of the ``nn.Linear`` it replaces.
    """

    def __init__(self, linear: nn.Linear, *, w_bits: int, a_bits: int) -> None:
        super().__init__(
            linear.in_features, linear.out_features, bias=linear.bias is not None,
            weight_quant=Int8WeightPerChannelFloat.let(bit_width=w_bits),
            device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            self.weight.copy_(linear.weight)
            if linear.bias is not None:
                self.bias.copy_(linear.bias)
        self.input_identity: nn.Module | None = QuantIdentity(
            act_quant=Int8ActPerTensorFloat.let(bit_width=a_bits), return_quant_tensor=False,
        ) if a_bits < FLOAT_ACT_BITS else None
        self.w_bits, self.a_bits = w_bits, a_bits

    def forward(self, x: Tensor) -> Tensor:
        if self.input_identity is not None:
            x = self.input_identity(x)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w_bits={self.w_bits}, a_bits={self.a_bits}"


def _check_bits(field: str, bits: int, *, float_from: int) -> None:
    if bits not in SUPPORTED_BITS and bits < float_from:
        raise field_error(None, field, bits, f"must be one of {SUPPORTED_BITS} or >= {float_from}")


def quantize_module(
    model: nn.Module, *, w_bits: int, a_bits: int, io_bits: int | None = None,
    io_names: Sequence[str] = ("head",),
) -> nn.Module:
    """Return a deep copy of ``model`` with every ``nn.Linear`` replaced by a quantized one.

    ``w_bits`` is the weight bit-width (>= 16: the copy is returned unchanged); ``a_bits`` the
    bit-width of the activation entering each Linear (>= 16: float activations, weight-only).
    Linears whose dotted name is, or lies under, one of ``io_names`` use ``io_bits`` for weights
    and (unless activations are float) inputs; ``io_bits`` >= 16 keeps them float, ``None``
    means the same bits as the rest. Call :func:`calibrate` before use.
    """
    _check_bits("w_bits", w_bits, float_from=FLOAT_WEIGHT_BITS)
    _check_bits("a_bits", a_bits, float_from=FLOAT_ACT_BITS)
    if io_bits is not None:
        _check_bits("io_bits", io_bits, float_from=FLOAT_ACT_BITS)
    qmodel = copy.deepcopy(model)
    if w_bits >= FLOAT_WEIGHT_BITS:
        return qmodel
    targets = [
        (name, m) for name, m in qmodel.named_modules()
        if isinstance(m, nn.Linear) and not isinstance(m, QuantWeightBiasInputOutputLayer)
        and not isinstance(m, nn.modules.linear.NonDynamicallyQuantizableLinear)]
    for name, linear in targets:
        wb, ab = w_bits, a_bits
        if io_bits is not None and any(name == p or name.startswith(p + ".") for p in io_names):
            if io_bits >= FLOAT_ACT_BITS:
                continue
            wb, ab = io_bits, (io_bits if a_bits < FLOAT_ACT_BITS else a_bits)
        parent_name, _, child = name.rpartition(".")
        setattr(qmodel.get_submodule(parent_name), child, QuantInputLinear(linear, w_bits=wb,
                                                                          a_bits=ab))
    return qmodel


def _is_quantized(model: nn.Module) -> bool:  # holds a Brevitas weight-quantized layer
    return any(isinstance(m, QuantWeightBiasInputOutputLayer) for m in model.modules())


def _quantizes_activations(model: nn.Module) -> bool:
    return any(isinstance(m, ActQuantProxyFromInjector) and m.is_quant_enabled
               for m in model.modules())


def calibrate(model: nn.Module, batches: Iterable[Tensor]) -> None:
    """Calibrate activation scales (``calibration_mode``), then correct biases
    (``bias_correction_mode``), in place, on the same batches. No-op on a float model."""
    if not _is_quantized(model):
        return
    data = [b.to(next(model.parameters()).device) for b in batches]
    if not data:
        raise ValueError("calibrate needs at least one batch")
    was_training = model.training
    model.eval()
    # Weight-only models have no activation quantizer to calibrate: their calibration pass
    # changes nothing (same weights, biases and outputs, checked in tests), so it is skipped.
    modes = (calibration_mode, bias_correction_mode) if _quantizes_activations(model) else \
        (bias_correction_mode,)
    for mode in modes:
        with torch.no_grad(), mode(model):
            for b in data:
                model(b)
    model.train(was_training)


def export_float_onnx(
    model: nn.Module, example: Tensor, path: str | Path, half: bool = False
) -> Path:
    """Export a float model (dynamic batch axis); ``half`` exports it in float16."""
    path = Path(path)
    model = copy.deepcopy(model).eval()
    if half:
        model, example = model.half(), example.half()
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), dynamo=False, **_EXPORT_KWARGS)
    proto = onnx.load(str(path))
    _name_weights(proto.graph)
    onnx.save(proto, str(path))
    return path


def _name_weights(g: onnx.GraphProto) -> None:
    """Name each matmul's weight initializer after its node (``/blocks.0/qkv/MatMul/weight``
    instead of ``onnx::MatMul_773``), so a runtime's fused nodes can still be traced to the
    layer they compute."""
    inits = {t.name: t for t in g.initializer}
    renamed: dict[str, str] = {}
    for node in g.node:
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        old = node.input[1]
        if old in inits and old not in renamed and old.startswith("onnx::"):
            renamed[old] = f"{node.name}/weight"
    for t in g.initializer:
        if t.name in renamed:
            t.name = renamed[t.name]
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]


def export_int_onnx(model: nn.Module, example: Tensor, path: str | Path, *,
                    pack_int4: bool = False, via: str = "float") -> Path:
    """Export a quantized model and rewrite it for integer kernels.

    ``via="float"`` builds the QCDQ graph from a float export and the calibrated scales
    (:func:`jointopt.qdq.build_qdq`, about 3x faster), or, for a model it cannot map, with
    Brevitas's ``export_onnx_qcdq``, which ``via="brevitas"`` always uses: the same graph
    either way. A model without quantized layers is exported as float. Batch axis is dynamic.
    Weight-only layers keep their integer weights in the graph; ``pack_int4`` stores 4-bit
    ones as INT4.
    """
    from jointopt.qdq import Unmappable, build_qdq

    if via not in ("float", "brevitas"):
        raise ValueError(f"via={via!r}: expected 'float' or 'brevitas'")
    path = Path(path)
    if not _is_quantized(model):
        return export_float_onnx(model, example, path)
    try:
        if via != "float":
            raise Unmappable(via)
        proto = build_qdq(model, example, _EXPORT_KWARGS)
    except Unmappable:
        proto = _export_qcdq(model, example)
    proto = _integerize(proto, pack_int4=pack_int4)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _export_qcdq(model: nn.Module, example: Tensor) -> onnx.ModelProto:
    """Brevitas's QCDQ export of ``model``."""
    was_training = model.training
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "qcdq.onnx"
        export_onnx_qcdq(
            model.eval(), args=example, export_path=str(raw), dynamo=False,
            keep_initializers_as_inputs=False, **_EXPORT_KWARGS)
        proto = onnx.load(str(raw))
    model.train(was_training)
    return proto


def _integerize(proto: onnx.ModelProto, *, pack_int4: bool = False) -> onnx.ModelProto:
    """Rewrite a Brevitas QCDQ graph into the QDQ form ORT fuses (see the module docstring).

    Weight-only layers keep ``int8 weight -> DequantizeLinear -> MatMul``; with ``pack_int4``
    weights on a grid of 4 bits or fewer are stored as INT4.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    new_inits: list[onnx.TensorProto] = []

    def const(name: str) -> np.ndarray | None:
        while name in prod and prod[name].op_type == "Identity":
            name = prod[name].input[0]
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def need(name: str) -> np.ndarray:
        value = const(name)
        if value is None:
            raise ValueError(f"QCDQ export: {name!r} should be a constant")
        return value

    def add_init(array: np.ndarray, name: str) -> str:
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def users(name: str) -> list[onnx.NodeProto]:
        return [n for n in g.node if name in n.input]

    def rename_input(old: str, new: str) -> None:
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new

    def attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name),
                    default)

    def int_const(name: str) -> np.ndarray | None:
        """A constant, or a QuantizeLinear of a constant (dynamo export) evaluated here."""
        q = prod.get(name)
        if q is None or q.op_type != "QuantizeLinear" or const(q.input[0]) is None:
            return const(name)
        x, s, z = need(q.input[0]), need(q.input[1]), need(q.input[2])
        shape = [-1 if d == attr(q, "axis", 1) % x.ndim else 1 for d in range(x.ndim)]
        y = np.rint(x / s.reshape(shape if s.ndim else [])) + z.reshape(shape if z.ndim else [])
        return np.clip(y, np.iinfo(z.dtype).min, np.iinfo(z.dtype).max).astype(z.dtype)

    extra: list[onnx.NodeProto] = []
    weight_only: list[onnx.NodeProto] = []
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        src = prod.get(dq.input[0])
        clip = src if src is not None and src.op_type == "Clip" else None
        raw = int_const(clip.input[0] if clip else dq.input[0])
        scale, zp = need(dq.input[1]), need(dq.input[2])
        if raw is not None:  # constant weight or bias
            w = np.clip(raw, need(clip.input[1]), need(clip.input[2])) if clip else raw
            axis = int(attr(dq, "axis", 1))
            outs = users(dq.output[0])
            if not outs or w.dtype == np.int32 and all(u.op_type == "Gemm" for u in outs):
                continue  # unused, or an Int32Bias already in the form QGemm fuses
            fold = w.dtype == np.int32 or w.ndim != 2 or len(outs) != 1  # bias, shared: float
            user = outs[0]
            if not fold and user.op_type == "Transpose" and list(attr(user, "perm", [])) == [1, 0]:
                w, axis, tr = w.T, 1 - axis, user
                rename_input(tr.output[0], dq.output[0])
                user = next(n for n in users(dq.output[0]) if n is not tr)
            act = prod.get(user.input[0])
            int_act = act is not None and act.op_type == "DequantizeLinear"
            gemm = user.op_type == "Gemm" and not attr(user, "transA", 0) and attr(
                user, "alpha", 1.0) == attr(user, "beta", 1.0) == 1
            matmul = user.input[1] == dq.output[0] and (user.op_type == "MatMul" or gemm)
            if fold or not matmul:
                # bias, or a consumer other than a matmul: plain float constant
                f = _dequantize(w, scale, zp, axis)
                rename_input(dq.output[0], add_init(f, dq.output[0] + "_f"))
                continue
            dq.input[0] = add_init(w, dq.output[0] + "_int")
            dq.ClearField("attribute")  # opset 17 DequantizeLinear has only `axis`
            dq.attribute.append(helper.make_attribute("axis", axis))
            if not int_act:
                # Weight-only: the integer weight stays in the graph (DequantizeLinear -> float
                # MatMul), the pattern runtimes execute as compressed weights (OpenVINO's
                # FullyConnected, ONNX Runtime's MatMulNBits). A Gemm becomes MatMul + Add,
                # since ONNX Runtime fuses only MatMul.
                weight_only.append(dq)
                if user.op_type == "Gemm":
                    if attr(user, "transB", 0):
                        dq.input[0] = add_init(np.ascontiguousarray(w.T), dq.output[0] + "_intT")
                        dq.ClearField("attribute")
                        dq.attribute.append(helper.make_attribute("axis", 1 - axis))
                    out, bias_in = user.output[0], (list(user.input) + [""])[2]
                    user.op_type = "MatMul"
                    user.ClearField("attribute")
                    del user.input[2:]
                    if bias_in:
                        user.output[0] = out + "_matmul"
                        extra.append(helper.make_node("Add", [user.output[0], bias_in], [out],
                                                      name=user.name + "_bias"))
                continue
            assert act is not None
            bias = const(user.input[2]) if gemm and len(user.input) > 2 and user.input[2] else None
            if bias is not None:  # Gemm (2-D input): int32 bias on the accumulator grid -> QGemm
                bs = np.broadcast_to(need(act.input[1]) * scale, bias.shape).astype(np.float32)
                b_int = np.round(bias / bs).astype(np.int32)
                name, out = dq.output[0] + "_bias", user.output[0]
                extra.append(helper.make_node("DequantizeLinear", [
                    add_init(b_int, name + "_int"), add_init(bs, name + "_scale"),
                    add_init(np.zeros(bias.shape, np.int32), name + "_zp")], [name], axis=0))
                user.input[2], user.output[0] = name, out + "_qgemm"
                rest = (bias - b_int.astype(np.float32) * bs).astype(np.float32)  # keeps bias exact
                extra.append(helper.make_node(
                    "Add", [user.output[0], add_init(rest, name + "_rest")], [out]))
        elif clip is not None and src is not None:  # activation Q -> Clip -> DQ
            q = prod.get(clip.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue
            qs, qzp = need(q.input[1]), need(q.input[2]).astype(np.float32)
            lo = (need(clip.input[1]).astype(np.float32) - qzp) * qs
            hi = (need(clip.input[2]).astype(np.float32) - qzp) * qs
            fclip = dq.output[0] + "_fclip"
            extra.append(helper.make_node("Clip", [
                q.input[0], add_init(lo.astype(np.float32), fclip + "_lo"),
                add_init(hi.astype(np.float32), fclip + "_hi")], [fclip]))
            q.input[0] = fclip
            dq.input[0] = q.output[0]
    g.node.extend(extra)
    g.initializer.extend(new_inits)
    _prune_and_sort(g)
    if pack_int4:
        proto = _pack_int4(proto, weight_only)
    return proto


def _pack_int4(proto: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
    """Store the weights of weight-only ``nodes`` whose values fit 4 bits as INT4 tensors.

    INT4 DequantizeLinear needs opset 21; the graph is converted there first (only the opset
    changes: the ops used here have the same semantics at 17 and 21).
    """
    names = {n.name for n in nodes}
    if not names:
        return proto
    proto = onnx.version_converter.convert_version(proto, 21)
    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.name not in names:
            continue
        for idx in (0, 2):
            t = inits.get(node.input[idx])
            if t is None:
                continue
            a = numpy_helper.to_array(t)
            if a.dtype != np.int8 or a.size and (a.min() < -8 or a.max() > 7):
                break  # wider than 4 bits: keep the int8 container
            name = t.name + "_i4"
            if name not in inits:  # zero points are shared between layers
                inits[name] = helper.make_tensor(name, onnx.TensorProto.INT4, a.shape,
                                                 a.astype(np.int8).ravel().tolist())
                proto.graph.initializer.append(inits[name])
            node.input[idx] = name
    _prune_and_sort(proto.graph)
    return proto


def _dequantize(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int) -> np.ndarray:
    """``(w - zp) * scale`` with per-axis ``scale``/``zp`` broadcast along ``axis``."""
    shape = [-1 if d == axis % w.ndim else 1 for d in range(w.ndim)] if scale.ndim else []
    w_f, zp_f = w.astype(np.float32), zp.astype(np.float32).reshape(shape)
    return ((w_f - zp_f) * scale.astype(np.float32).reshape(shape)).astype(np.float32)


def _prune_and_sort(g: onnx.GraphProto) -> None:
    """Drop what the outputs do not need, make initializers non-inputs, sort topologically."""
    prod = {o: n for n in g.node for o in n.output}
    needed, live, stack = set(), {}, [o.name for o in g.output]
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = prod.get(name)
        if node is not None:
            live[id(node)] = node
            stack.extend(i for i in node.input if i)
    avail = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    # Kahn's algorithm, the earliest ready node first: the original order where it can be kept,
    # in time linear in the graph (a level-by-level sort rescans every pending node once per
    # level: about 0.13 s for a depth-6 int8 graph of 637 nodes, a seventh of its export).
    nodes = [n for n in g.node if id(n) in live]
    at = {o: k for k, n in enumerate(nodes) for o in n.output}
    waits = [0] * len(nodes)
    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for k, n in enumerate(nodes):
        for i in set(n.input) - avail:
            if i not in at:
                raise RuntimeError(f"ONNX graph: input {i!r} of {n.name!r} is missing")
            waits[k] += 1
            consumers[at[i]].append(k)
    ready = [k for k, w in enumerate(waits) if w == 0]
    heapq.heapify(ready)
    ordered: list[onnx.NodeProto] = []
    while ready:
        k = heapq.heappop(ready)
        ordered.append(nodes[k])
        for c in consumers[k]:
            waits[c] -= 1
            if waits[c] == 0:
                heapq.heappush(ready, c)
    if len(ordered) != len(nodes):
        raise RuntimeError("ONNX graph has a cycle")
    consts = {t.name for t in g.initializer}
    keep = [t for t in g.initializer if t.name in needed]
    inputs = [i for i in g.input if i.name not in consts]  # initializers: constants, not inputs
    del g.node[:], g.initializer[:], g.input[:]
    g.node.extend(ordered)
    g.initializer.extend(keep)
    g.input.extend(inputs)


def integer_ops(onnx_path: str | Path) -> collections.Counter:
    """Op-type counts of the graph ONNX Runtime (CPU, the session options jointopt deploys
    with) actually executes. Integer matmuls show as e.g. ``MatMulIntegerToFloat`` (see
    :data:`INTEGER_MATMUL_OPS`), weight-only ones as ``MatMulNBits``."""
    from jointopt.runtimes import OnnxRuntimeRuntime

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        OnnxRuntimeRuntime.session(Path(onnx_path), 1, optimized=optimized)
        graph = onnx.load(str(optimized)).graph
    return collections.Counter(n.op_type for n in graph.node)
