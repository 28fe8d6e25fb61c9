"""Deployment runtimes: what executes an exported model, and what it really ran.

A runtime loads the ONNX graph of a config (:mod:`jointopt.deploy`) for a fixed batch size,
reports which precisions its CPU kernels execute natively (:class:`RuntimeCaps`, which the
precision plan reads), writes its own deployable format, and lists the dtypes its optimized
graph executes each part in, so a test can compare them with the plan.

Two are built in, both on the CPU: ``openvino`` (the default; fastest here at every precision,
see benchmarks/RESULTS.md) and ``onnxruntime``. Add one with::

    @register_runtime("my-npu")
    class MyNpu:
        name = "my-npu"
        def caps(self) -> RuntimeCaps: ...
        def load(self, onnx_path, plan, *, threads, batch): ...   # -> callable(x) -> logits
        def save_native(self, onnx_path, plan, folder): ...    # -> deployed files
        def weight_bytes(self, files): ...                     # -> bytes of stored weights
        def executed(self, onnx_path, plan, *, threads): ...    # -> {part: (compute, weight)}

Both use the same threads and session options for every precision: ``threads`` intra-op
threads, one stream, latency mode; only the inference precision follows the plan.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jointopt.precision import PrecisionPlan, RuntimeCaps

__all__ = ["Runtime", "register_runtime", "get_runtime", "runtime_names", "part_of",
           "load_batches", "OpenVinoRuntime", "OnnxRuntimeRuntime", "DEFAULT_RUNTIME"]

DEFAULT_RUNTIME = "openvino"
Runner = Callable[[np.ndarray], np.ndarray]


class Runtime(Protocol):
    name: str

    def caps(self) -> RuntimeCaps: ...

    def version(self) -> str: ...

    def load(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int, batch: int
             ) -> Runner: ...

    def save_native(self, onnx_path: Path, plan: PrecisionPlan, folder: Path,
                    metadata: dict[str, str] | None = None) -> list[Path]: ...

    def executed(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int
                 ) -> dict[str, tuple[str, str | None]]: ...

    def weight_bytes(self, files: list[Path]) -> int: ...


_RUNTIMES: dict[str, type] = {}


def register_runtime(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _RUNTIMES[name] = cls
        return cls

    return deco


def runtime_names() -> list[str]:
    return sorted(_RUNTIMES)


@lru_cache(maxsize=8)
def get_runtime(name: str) -> Runtime:
    from jointopt.errors import UserError

    if name not in _RUNTIMES:
        raise UserError(f"evaluate.latency={name!r}: unknown runtime "
                        f"(registered: {', '.join(runtime_names())})")
    return _RUNTIMES[name]()


def load_batches(runtime: Runtime, onnx_path: Path, plan: PrecisionPlan, *, threads: int,
                 batches: tuple[int, ...]) -> dict[int, Runner]:
    """``runtime.load`` for each batch size, the loads side by side in threads.

    A compile is mostly single-threaded graph work: on 2 cores, OpenVINO's two compiles (batch 1
    and 64) of 12 random quickstart subnets took a median 0.41 s side by side against 0.59 s one
    after the other (benchmarks/RESULTS.md, "the cost of one evaluation"). Nothing is timed
    while they run.
    """
    from concurrent.futures import ThreadPoolExecutor

    sizes = list(dict.fromkeys(batches))
    if len(sizes) == 1:
        return {sizes[0]: runtime.load(onnx_path, plan, threads=threads, batch=sizes[0])}
    with ThreadPoolExecutor(max_workers=len(sizes), thread_name_prefix="jointopt-load") as pool:
        futures = {b: pool.submit(runtime.load, onnx_path, plan, threads=threads, batch=b)
                   for b in sizes}
        return {b: f.result() for b, f in futures.items()}


_PART = re.compile(r"^/(patch_embed|head|blocks\.\d+)(?:/(qkv|proj|fc1|fc2|attn_qk|attn_av))?/")
# Normalise runtime dtype names to the plan's: unsigned 8-bit activations are 8-bit integers.
_DT = {"f32": "f32", "bf16": "bf16", "f16": "f16", "i8": "i8", "u8": "i8", "i4": "i4",
       "u4": "i4", "float32": "f32", "float16": "f16", "bfloat16": "bf16", "int8": "i8",
       "uint8": "i8", "int4": "i4", "uint4": "i4"}


_CONV = re.compile(r"^/patch_embed/convs/(?:convs\.)?(\d+)/")


def part_of(node_name: str) -> str | None:
    """The plan part an exported node belongs to: ``/blocks.0/qkv/MatMul`` -> ``blocks.0.qkv``,
    ``/patch_embed/convs/convs.1/conv/Conv`` -> ``patch_embed.convs.1`` (a conv stem)."""
    if c := _CONV.match(node_name):
        return f"patch_embed.convs.{c.group(1)}"
    m = _PART.match(node_name)
    if m is None:
        return None
    base, sub = m.group(1), m.group(2)
    if base in ("patch_embed", "head"):
        return base
    return f"{base}.{sub}" if sub else None


# ---- OpenVINO ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _ov_core() -> Any:
    import openvino as ov

    return ov.Core()


def _weight_names(op: Any) -> list[str]:
    """Original names along the weight input of a runtime node (constant, transposes,
    conversions), nearest first."""
    out: list[str] = []
    node = op.inputs()[1].get_source_output().get_node() if len(op.inputs()) > 1 else None
    for _ in range(4):
        if node is None:
            break
        out += node.get_rt_info()["originalLayersNames"].astype(str).split(",")
        node = node.inputs()[0].get_source_output().get_node() if node.inputs() else None
    return out


@register_runtime("openvino")
class OpenVinoRuntime:
    """OpenVINO CPU. f32, bf16 (AVX512-BF16 / AMX) or f16 inference precision by the plan, int8
    kernels for Brevitas's QDQ graphs, and int8 / int4 weight compression decompressed inside
    FullyConnected for weight-only plans. Its CPU plugin would otherwise pick bf16 on a
    bf16-capable CPU and quantize activations of compressed-weight layers on the fly: both are
    pinned here (``INFERENCE_PRECISION_HINT``, ``DYNAMIC_QUANTIZATION_GROUP_SIZE: 0``)."""

    name = "openvino"

    def version(self) -> str:
        import openvino as ov

        return str(ov.get_version()).split("-")[0]

    def caps(self) -> RuntimeCaps:
        have = set(_ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        half = "bf16" if "BF16" in have else "f16" if "FP16" in have else None
        return RuntimeCaps("openvino", half=half, int8="INT8" in have,
                           weight_storage=("i8", "i4"))

    @staticmethod
    def precision_options(plan: PrecisionPlan) -> dict[str, str]:
        """The compile options that make OpenVINO run ``plan`` (deployers need them too)."""
        return {"INFERENCE_PRECISION_HINT": plan.float_dtype,
                "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0"}

    def _config(self, plan: PrecisionPlan, threads: int) -> dict[str, Any]:
        return {**self.precision_options(plan), "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    def _compiled(self, onnx_path: Path, plan: PrecisionPlan, threads: int, batch: int) -> Any:
        core = _ov_core()
        model = core.read_model(str(onnx_path))
        shape = list(model.inputs[0].get_partial_shape().to_shape()) \
            if model.inputs[0].get_partial_shape().is_static else None
        if shape is None:
            dims = model.inputs[0].get_partial_shape()
            shape = [batch] + [d.get_length() for d in list(dims)[1:]]
        shape[0] = batch
        model.reshape({model.inputs[0].get_any_name(): shape})
        return core.compile_model(model, "CPU", self._config(plan, threads))

    def load(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int, batch: int
             ) -> Runner:
        compiled = self._compiled(onnx_path, plan, threads, batch)
        request = compiled.create_infer_request()

        def run(x: np.ndarray) -> np.ndarray:
            return request.infer({0: x})[0]

        return run

    def save_native(self, onnx_path: Path, plan: PrecisionPlan, folder: Path,
                    metadata: dict[str, str] | None = None) -> list[Path]:
        """OpenVINO IR (``model.xml`` / ``model.bin``), 16-bit plans with float16 weights;
        ``metadata`` goes into the IR's ``rt_info`` under ``jointopt``."""
        import openvino as ov

        xml = folder / "model.xml"
        model = _ov_core().read_model(str(onnx_path))
        for k, v in (metadata or {}).items():
            model.set_rt_info(v, ["jointopt", k])
        ov.save_model(model, str(xml), compress_to_fp16=plan.other_weights == "f16")
        return [xml, xml.with_suffix(".bin")]

    def weight_bytes(self, files: list[Path]) -> int:
        """Bytes of the IR's stored constants, less integer shape and index constants."""
        xml = next(f for f in files if Path(f).suffix == ".xml")
        total = 0
        for op in _ov_core().read_model(str(xml)).get_ordered_ops():
            if op.get_type_name() == "Constant" and op.get_element_type().get_type_name() \
                    not in ("i64", "u64"):
                total += op.get_byte_size()
        return total

    @staticmethod
    @lru_cache(maxsize=256)
    def keeps_compressed(k: int, n: int, weight: str, float_dtype: str) -> bool:
        """Whether this CPU's OpenVINO runs a weight-only linear of ``k`` inputs and ``n``
        outputs with its ``weight`` (``i8``, ``i4``) weights inside the kernel at inference
        precision ``float_dtype``, asked of the runtime with a one-layer graph (cached).

        Not every shape is: on a CPU with AMX (seen with OpenVINO 2026.4 on an Intel Xeon with
        AMX-BF16), bf16 plans get narrow layers' weights converted to bf16 at load, e.g. 32 x 32,
        48 x 64 or 200 x 40 (k x n), while 32 x 64, 64 x 16 and every layer of the shipped
        search spaces (widths multiples of 32, at least 64 on one side) stay compressed; on
        the AMD EPYC hosts of earlier runs every shape was. A plan assumes compression:
        ``check_deployment`` reports such a layer."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng(0)
        lim = 7 if weight == "i4" else 127
        w = rng.integers(-lim, lim + 1, (k, n)).astype(np.int8)
        dtype = TensorProto.INT4 if weight == "i4" else TensorProto.INT8
        graph = helper.make_graph(
            [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"], axis=1),
             helper.make_node("MatMul", ["x", "wf"], ["y"], name="/head/MatMul")],
            "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
            [helper.make_tensor("w", dtype, [k, n], w.ravel().tolist()),
             numpy_helper.from_array(np.full(n, 0.01, np.float32), "s"),
             helper.make_tensor("z", dtype, [n], [0] * n)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "probe.onnx"
            onnx.save(model, str(path))
            compiled = _ov_core().compile_model(str(path), "CPU", {
                "INFERENCE_PRECISION_HINT": float_dtype, "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
                "INFERENCE_NUM_THREADS": 1})
            for op in compiled.get_runtime_model().get_ordered_ops():
                if op.get_rt_info()["layerType"].astype(str) == "FullyConnected":
                    got = op.inputs()[1].get_source_output().get_node().get_rt_info()[
                        "outputPrecisions"].astype(str)
                    return _DT.get(got.split(",")[0], got) == weight
        return False

    def executed(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int
                 ) -> dict[str, tuple[str, str | None]]:
        """{part: (dtype the multiply ran in, dtype of the weight operand)} of the compiled
        graph. A fused node (attention's matmuls in one MHA subgraph) names all its parts."""
        compiled = self._compiled(onnx_path, plan, threads, 1)
        out: dict[str, tuple[str, str | None]] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str)
            if layer not in ("FullyConnected", "MatMul", "Subgraph", "Gemm", "Convolution"):
                continue
            ins = [i.get_source_output().get_node().get_rt_info()["outputPrecisions"]
                   .astype(str) for i in op.inputs()]
            names = info["originalLayersNames"].astype(str).split(",")
            parts = [part_of(n) for n in names]
            if layer == "Convolution":  # a conv stem's (fused with its ReLU)
                parts = [next((p for p in parts if p is not None and ".convs." in p), None)]
            elif layer == "FullyConnected":
                # One linear. Fusions rename the node (a norm's scale folded in, the head named
                # after the output), so its weight constant's name decides, then its own.
                found = next((p for n in _weight_names(op) + names
                              if (p := part_of(n)) is not None), None)
                found = found or ("head" if "logits" in names else None)
                parts = [found] if found and not found.endswith(("attn_qk", "attn_av")) else []
            else:  # attention matmuls, alone or fused with their softmax into one subgraph
                parts = [p for p, n in zip(parts, names, strict=True)
                         if p is not None and p.endswith(("attn_qk", "attn_av"))
                         and n.endswith("MatMul")]
            act = _DT.get(ins[0].split(",")[0], ins[0])
            weight = _DT.get(ins[1].split(",")[0], ins[1]) \
                if layer in ("FullyConnected", "Convolution") and len(ins) > 1 else None
            for part in parts:
                if part is not None:
                    out.setdefault(part, (act, weight))
        return out


def _onnx_weight_bytes(path: Path) -> int:
    import onnx

    total = 0
    for t in onnx.load(str(path)).graph.initializer:
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.UINT64):
            continue
        n = int(np.prod(t.dims)) if t.dims else 1
        bits = 4 if t.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4) else \
            np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize * 8
        total += (n * bits + 7) // 8
    return total


# ---- ONNX Runtime ------------------------------------------------------------------------

_ORT_INT = frozenset({"QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm",
                      "DynamicQuantizeMatMul", "QAttention"})


@register_runtime("onnxruntime")
class OnnxRuntimeRuntime:
    """ONNX Runtime, CPU execution provider. f32 kernels, int8 kernels for QDQ graphs
    (MatMulIntegerToFloat) and 8/4-bit weight-only kernels (MatMulNBits, which it fuses from
    DequantizeLinear -> MatMul); no bf16 CPU kernels. MatMulNBits would by default quantize its
    activations to int8 on the fly (``session.qdq_matmulnbits_accuracy_level`` 4): pinned to
    float32 compute here, so weight-only runs as weight-only."""

    name = "onnxruntime"

    def version(self) -> str:
        import onnxruntime as ort

        return str(ort.__version__)

    def caps(self) -> RuntimeCaps:
        return RuntimeCaps("onnxruntime", half=None, int8=True, weight_storage=("i8", "i4"))

    #: Session config entries that make ONNX Runtime run the plan (deployers need them too).
    SESSION_CONFIG = {"session.qdq_matmulnbits_accuracy_level": "1"}

    @staticmethod
    def session(path: Path, threads: int, optimized: Path | None = None) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        for k, v in OnnxRuntimeRuntime.SESSION_CONFIG.items():  # weight-only: f32 compute
            so.add_session_config_entry(k, v)
        if optimized is not None:
            so.optimized_model_filepath = str(optimized)
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def load(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int, batch: int
             ) -> Runner:
        sess = self.session(onnx_path, threads)
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]

    def save_native(self, onnx_path: Path, plan: PrecisionPlan, folder: Path,
                    metadata: dict[str, str] | None = None) -> list[Path]:
        """ONNX is this runtime's own format; ``metadata`` goes into its metadata_props."""
        if metadata:
            import onnx

            proto = onnx.load(str(onnx_path))
            onnx.helper.set_model_props(proto, dict(metadata))
            onnx.save(proto, str(onnx_path))
        return [onnx_path]

    def weight_bytes(self, files: list[Path]) -> int:
        """Bytes of the ONNX initializers, less int64 shape and index constants."""
        return _onnx_weight_bytes(files[0])

    def executed(self, onnx_path: Path, plan: PrecisionPlan, *, threads: int
                 ) -> dict[str, tuple[str, str | None]]:
        import onnx

        with tempfile.TemporaryDirectory() as tmp:
            opt = Path(tmp) / "optimized.onnx"
            self.session(onnx_path, threads, optimized=opt)
            graph = onnx.load(str(opt)).graph
        out: dict[str, tuple[str, str | None]] = {}
        for node in graph.node:
            part = part_of(node.name)
            if part is None:
                continue
            if node.op_type in _ORT_INT:
                out[part] = ("i8", "i8")
            elif node.op_type == "MatMulNBits":
                bits = next((a.i for a in node.attribute if a.name == "bits"), 4)
                out[part] = ("f32", "i4" if bits <= 4 else "i8")
            elif node.op_type in ("Conv", "FusedConv"):
                out[part] = ("f32", "f32")
            elif node.op_type in ("MatMul", "Gemm", "FusedMatMul") and part not in out:
                out[part] = ("f32", "f32" if not part.endswith(("attn_qk", "attn_av"))
                             else None)
        return out
