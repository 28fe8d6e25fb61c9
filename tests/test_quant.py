"""Tests for jointopt.quant: Brevitas fake quantization and the int8 ONNX Runtime export."""

from __future__ import annotations

import collections
import copy

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from jointopt.errors import UserError
from jointopt.quant import (
    INTEGER_MATMUL_OPS,
    QuantInputLinear,
    calibrate,
    export_int_onnx,
    integer_ops,
    quantize_module,
)
from jointopt.runtimes import OnnxRuntimeRuntime

ort = pytest.importorskip("onnxruntime")

DEPTH, DIM, CLASSES, IMG, PATCH = 2, 32, 4, 16, 4


class Block(nn.Module):
    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, DIM, PATCH, PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos = nn.Parameter(torch.randn(1, (IMG // PATCH) ** 2 + 1, DIM) * 0.02)
        self.blocks = nn.Sequential(*[Block(DIM) for _ in range(DEPTH)])
        self.norm, self.head = nn.LayerNorm(DIM), nn.Linear(DIM, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with a bright square in one quadrant; the class is the quadrant."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, 1, IMG, IMG, generator=g) * 0.5
    off = torch.randint(0, IMG // 2 - 4, (n, 2), generator=g)
    for i in range(n):
        r = (y[i] // 2) * IMG // 2 + off[i, 0]
        c = (y[i] % 2) * IMG // 2 + off[i, 1]
        x[i, 0, r:r + 4, c:c + 4] += 1.5
    return x, y


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest and immune to a busy machine's scheduling stalls
    (two threads on a loaded 2-core machine ran these tests 20x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _threads() -> None:
    """Overrides conftest's per-test ``torch.set_num_threads(2)`` for this module."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(one_thread) -> TinyViT:
    torch.manual_seed(0)
    model = TinyViT()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = make_data(2048, seed=1)
    for _ in range(200):
        i = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    calib, _ = make_data(128, seed=2)
    test, labels = make_data(256, seed=3)
    return {"calib": calib, "test": test, "labels": labels}


def quantized(model: nn.Module, calib: torch.Tensor, w: int, a: int, **kw) -> nn.Module:
    q = quantize_module(model, w_bits=w, a_bits=a, **kw)
    calibrate(q, calib.split(32))
    return q.eval()


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def run_ort(path, x: torch.Tensor) -> np.ndarray:
    sess = OnnxRuntimeRuntime.session(path, 1)  # the session options jointopt deploys with
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def test_float_model_learned_task(trained, data):
    acc = (logits(trained, data["test"]).argmax(1) == data["labels"]).float().mean().item()
    assert acc >= 0.95


def test_w32_is_an_exact_copy(trained, data):
    q = quantize_module(trained, w_bits=32, a_bits=32)
    assert q is not trained
    assert not any(isinstance(m, QuantInputLinear) for m in q.modules())
    assert torch.equal(logits(q, data["test"]), logits(trained, data["test"]))


def test_every_linear_is_swapped(trained):
    q = quantize_module(trained, w_bits=4, a_bits=8, io_bits=8)
    swapped = {n: m for n, m in q.named_modules() if isinstance(m, QuantInputLinear)}
    assert len(swapped) == 4 * DEPTH + 1
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert swapped["blocks.0.fc1"].w_bits == 4 and swapped["head"].w_bits == 8
    assert swapped["blocks.0.qkv"].input_identity is not None
    assert torch.equal(swapped["blocks.1.proj"].weight, trained.blocks[1].proj.weight)
    weight_only = quantize_module(trained, w_bits=8, a_bits=32)
    assert all(m.input_identity is None
               for m in weight_only.modules() if isinstance(m, QuantInputLinear))
    float_head = quantize_module(trained, w_bits=8, a_bits=8, io_bits=32)
    assert type(float_head.head) is nn.Linear


@pytest.mark.parametrize("kw", [{"w_bits": 5, "a_bits": 8}, {"w_bits": 8, "a_bits": 12},
                                {"w_bits": 8, "a_bits": 8, "io_bits": 1}])
def test_bad_bits_are_user_errors(trained, kw):
    with pytest.raises(UserError):
        quantize_module(trained, **kw)


def test_8bit_agrees_with_float(trained, data):
    q = quantized(trained, data["calib"], 8, 8)
    agree = (logits(q, data["test"]).argmax(1) == logits(trained, data["test"]).argmax(1))
    assert agree.float().mean().item() >= 0.98


@pytest.mark.parametrize("w,a,passes", [(8, 16, 1), (4, 16, 1), (8, 8, 2)])
def test_calibrate_skips_only_a_pass_that_changes_nothing(trained, data, w, a, passes):
    """A weight-only model has no activation quantizer: ``calibrate`` runs only its bias
    correction, and the result equals running Brevitas's calibration pass first."""
    from brevitas.graph.calibrate import bias_correction_mode, calibration_mode

    from jointopt import quant

    fast = quantized(trained, data["calib"], w, a)
    full = quantize_module(trained, w_bits=w, a_bits=a)
    full.eval()
    with torch.no_grad():
        for mode in (calibration_mode, bias_correction_mode):
            with mode(full):
                for b in data["calib"].split(32):
                    full(b)
    assert torch.equal(logits(fast, data["test"]), logits(full, data["test"]))
    for k, v in full.state_dict().items():
        assert torch.equal(fast.state_dict()[k], v), k
    assert (2 if quant._quantizes_activations(full) else 1) == passes


def test_error_grows_as_bits_fall(trained, data):
    ref = logits(trained, data["test"])
    mse = [((logits(quantized(trained, data["calib"], b, b), data["test"]) - ref) ** 2).mean()
           for b in (8, 6, 4, 3, 2)]
    assert all(lo < hi for lo, hi in zip(mse, mse[1:], strict=False)), mse


def test_int8_onnx_runs_integer_matmuls(trained, data, tmp_path):
    q = quantized(trained, data["calib"], 8, 8)
    ops = integer_ops(export_int_onnx(q, data["test"][:2], tmp_path / "w8a8.onnx"))
    n_linear = sum(isinstance(m, QuantInputLinear) for m in q.modules())
    assert sum(ops[k] for k in INTEGER_MATMUL_OPS) == n_linear, ops
    assert ops["Gemm"] == 0 and ops["DequantizeLinear"] == 0, ops
    # the only float matmuls left are the two activation x activation products of attention
    assert ops["MatMul"] + ops["FusedMatMul"] == 2 * DEPTH, ops


@pytest.mark.parametrize("bits", [8, 4])
def test_onnxruntime_matches_pytorch(trained, data, tmp_path, bits):
    q = quantized(trained, data["calib"], bits, bits)
    path = export_int_onnx(q, data["test"][:2], tmp_path / f"w{bits}.onnx")
    ort_top1 = run_ort(path, data["test"]).argmax(1)
    torch_top1 = logits(q, data["test"]).argmax(1).numpy()
    assert (ort_top1 == torch_top1).mean() >= 0.99
    if bits < 8:  # int8 containers holding values on the low-bit grid
        graph = onnx.load(str(path)).graph
        weights = [onnx.numpy_helper.to_array(t) for t in graph.initializer
                   if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2]
        assert len(weights) == 4 * DEPTH + 1
        assert all(np.abs(w).max() <= 2 ** (bits - 1) - 1 for w in weights)


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_only_keeps_integer_weights_in_the_graph(trained, data, tmp_path, bits):
    """Weight-only: int8 (or, packed, int4) weights -> DequantizeLinear -> float MatMul, which
    ONNX Runtime fuses into its weight-only kernel (MatMulNBits), no integer activations."""
    q = quantized(trained, data["calib"], bits, 32)
    path = export_int_onnx(q, data["test"][:2], tmp_path / f"w{bits}.onnx", pack_int4=True)
    graph = onnx.load(str(path)).graph
    want = onnx.TensorProto.INT4 if bits == 4 else onnx.TensorProto.INT8
    ints = [t for t in graph.initializer if t.data_type == want and len(t.dims) == 2]
    assert len(ints) == 4 * DEPTH + 1
    ops = integer_ops(path)
    assert not any(ops[k] for k in INTEGER_MATMUL_OPS), ops
    assert ops["MatMulNBits"] == 4 * DEPTH + 1, ops
    np.testing.assert_allclose(run_ort(path, data["test"]), logits(q, data["test"]).numpy(),
                               atol=1e-4)


def _graph_facts(path) -> tuple[collections.Counter, list[bytes], list[bytes]]:
    """Op counts (Identity aside: the two exporters share repeated parameters differently),
    and the sorted bytes of the integer and of the float initializers of at least 2-D."""
    g = onnx.load(str(path)).graph
    ops = collections.Counter(n.op_type for n in g.node if n.op_type != "Identity")
    arrays = [onnx.numpy_helper.to_array(t) for t in g.initializer]
    ints = sorted(a.tobytes() for a in arrays if a.dtype.kind in "iu" and a.ndim == 2)
    floats = sorted(a.tobytes() for a in arrays if a.dtype.kind == "f" and a.ndim >= 2)
    return ops, ints, floats


@pytest.mark.parametrize("w,a", [(8, 8), (4, 4), (3, 8), (8, 32), (4, 32), (8, 16)])
def test_integer_graph_built_from_the_float_export_is_brevitas_graph(trained, data, tmp_path,
                                                                     w, a):
    """export_int_onnx's default path (jointopt.qdq: a float export, then the calibrated
    scales put in) writes the graph Brevitas's QCDQ export gives after the same rewrite: the
    same ops, integer and float weights, and the same outputs on ONNX Runtime, bit for bit."""
    q = quantized(trained, data["calib"], w, a, io_bits=8, io_names=("head",))
    before = logits(q, data["test"])
    pack = w <= 4 and a >= 16
    direct = export_int_onnx(q, data["test"][:2], tmp_path / "direct.onnx", pack_int4=pack)
    ref = export_int_onnx(q, data["test"][:2], tmp_path / "ref.onnx", pack_int4=pack,
                          via="brevitas")
    assert _graph_facts(direct) == _graph_facts(ref)
    np.testing.assert_array_equal(run_ort(direct, data["test"]), run_ort(ref, data["test"]))
    # the stand-in Linears are gone again: the model computes as before
    assert sum(isinstance(m, QuantInputLinear) for m in q.modules()) == 4 * DEPTH + 1
    assert torch.equal(logits(q, data["test"]), before)


def test_a_model_the_float_export_cannot_carry_falls_back_to_brevitas(trained, data, tmp_path):
    from jointopt.qdq import Unmappable, build_qdq
    from jointopt.quant import _EXPORT_KWARGS

    model = copy.deepcopy(trained)
    with torch.no_grad():  # two layers with byte-equal weights: a weight names no layer
        model.blocks[1].fc1.weight.copy_(model.blocks[0].fc1.weight)
    q = quantized(model, data["calib"], 8, 8)
    with pytest.raises(Unmappable, match="blocks.0.fc1 and blocks.1.fc1"):
        build_qdq(q, data["test"][:2], _EXPORT_KWARGS)
    path = export_int_onnx(q, data["test"][:2], tmp_path / "fallback.onnx")
    ref = export_int_onnx(q, data["test"][:2], tmp_path / "ref.onnx", via="brevitas")
    np.testing.assert_array_equal(run_ort(path, data["test"]), run_ort(ref, data["test"]))
    with pytest.raises(ValueError, match="via='torch'"):
        export_int_onnx(q, data["test"][:2], tmp_path / "x.onnx", via="torch")
    assert not (tmp_path / "x.onnx").exists()


def test_prune_and_sort_orders_topologically_keeps_order_and_drops_dead_nodes() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from jointopt.quant import _prune_and_sort

    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    nodes = [  # listed out of order; "dead" feeds nothing the output needs
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Add", ["b", "c"], ["y"], name="fourth"),
        helper.make_node("MatMul", ["x", "w"], ["a"], name="first"),
        helper.make_node("Neg", ["a"], ["dead"], name="dead"),
        helper.make_node("Abs", ["a"], ["c"], name="third"),
    ]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in ("x", "w", "y")]
    g = helper.make_graph(nodes, "g", vi[:2], vi[2:], initializer=[w])
    _prune_and_sort(g)
    assert [n.name for n in g.node] == ["first", "second", "third", "fourth"]
    assert [i.name for i in g.input] == ["x"] and [t.name for t in g.initializer] == ["w"]

    loop = helper.make_graph([helper.make_node("Relu", ["z"], ["y"]),
                              helper.make_node("Abs", ["y"], ["z"])], "loop", [], vi[2:])
    with pytest.raises(RuntimeError, match="cycle"):
        _prune_and_sort(loop)
    missing = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"], name="r")],
                                "missing", [], vi[2:])
    with pytest.raises(RuntimeError, match="'nowhere' of 'r' is missing"):
        _prune_and_sort(missing)
