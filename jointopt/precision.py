"""The precision plan: the one place that decides the dtype of every part of a config's network.

A config names bit-widths (``w_bits``, ``a_bits``); what actually runs depends on the runtime that
executes it. :func:`plan_for` turns the two into a :class:`PrecisionPlan` that lists, for every
part of the subnet (patch embedding, qkv / proj / fc1 / fc2, the two attention matmuls, the
token merge, the norms, softmax and GELU, the head), the dtype its multiply runs in and, for
layers with weights, the dtype the deployed file stores them in. Everything downstream reads the
plan: the accuracy model (:mod:`jointopt.evaluation`), the deployed graph and its runtime
(:mod:`jointopt.deploy`), BitOPs, energy and model bytes (:mod:`jointopt.cost`). No other module
compares bit-widths against 16.

Valid precisions (``w{w}a{a}``):

* ``w32a32``: float32 everywhere.
* ``w16a16``: 16-bit float everywhere: bfloat16 or float16, whichever the CPU executes natively
  (AVX512-BF16 / AMX here); float32 ("nearest") where it has neither.
* ``w{8,6,4,3,2}a{8,6,4,3,2}``: integer weights and activations on the linear layers, integer
  matmul kernels. Runtimes here have 8-bit kernels only, so narrower grids run in 8-bit
  containers ("nearest"). The attention matmuls (q.k^T and softmax.v), norms, softmax and merge
  stay float32: Brevitas quantizes the inputs of linear layers only, and so does the graph.
* ``w{8,6,4,3,2}a32`` and ``w{8,6,4,3,2}a16``: weight-only. Weights are stored as int8 (grids of
  5-8 bits) or int4 (2-4 bits) and decompressed inside the matmul kernel where the runtime can
  (OpenVINO); activations and the multiply are float32 or 16-bit float.

Float weights with integer activations, and mixed float widths (``w32a16``), are not valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["BITS", "DTYPE_BITS", "DTYPE_BYTES", "Part", "PrecisionPlan", "RuntimeCaps",
           "invalid_reason", "parse_precision", "plan_for", "precision_name", "valid_pairs"]

#: Bit-widths a config may name: 32 = float32, 16 = 16-bit float, the rest integer grids.
BITS: tuple[int, ...] = (32, 16, 8, 6, 4, 3, 2)
INT_BITS: tuple[int, ...] = (8, 6, 4, 3, 2)
DTYPE_BITS: dict[str, int] = {"f32": 32, "bf16": 16, "f16": 16, "i8": 8, "u8": 8, "i4": 4}
DTYPE_BYTES: dict[str, float] = {k: v / 8 for k, v in DTYPE_BITS.items()}
_NAME = re.compile(r"^w(\d+)a(\d+)$")


def _is_int(bits: int) -> bool:
    return bits in INT_BITS


def invalid_reason(w_bits: int, a_bits: int) -> str | None:
    """Why ``(w_bits, a_bits)`` is not a valid precision, or None when it is."""
    for name, b in (("w_bits", w_bits), ("a_bits", a_bits)):
        if b not in BITS:
            return f"{name}={b} is not one of {list(BITS)}"
    if _is_int(a_bits) and not _is_int(w_bits):
        return "integer activations need integer weights"
    if not _is_int(w_bits) and w_bits != a_bits:
        return (f"float weights run at their own width: w{w_bits} needs a{w_bits} "
                f"(got a{a_bits})")
    return None


def precision_name(w_bits: int, a_bits: int) -> str:
    return f"w{w_bits}a{a_bits}"


def parse_precision(text: str) -> tuple[int, int]:
    """``"w8a8"`` -> (8, 8); raises ValueError for anything else or an invalid pair."""
    m = _NAME.match(str(text).strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"{text!r} is not a precision name like w8a8 or w32a32")
    w, a = int(m.group(1)), int(m.group(2))
    why = invalid_reason(w, a)
    if why is not None:
        raise ValueError(f"{text!r}: {why}")
    return w, a


def valid_pairs(w_choices: tuple[int, ...], a_choices: tuple[int, ...]) -> list[tuple[int, int]]:
    """Every valid (w, a) pair of two bit-width lists, widest first."""
    pairs = [(w, a) for w in w_choices for a in a_choices if invalid_reason(w, a) is None]
    return sorted(set(pairs), key=lambda p: (-p[0], -p[1]))


@dataclass(frozen=True)
class RuntimeCaps:
    """What a runtime executes natively on this machine.

    Args:
        name: runtime family (``openvino``, ``onnxruntime``), the prefix of ``latency_runtime``.
        half: the 16-bit float format its matmuls run in (``bf16``, ``f16``), or None.
        int8: integer matmul kernels for integer weights and activations.
        weight_storage: compressed weight dtypes it decompresses inside the matmul kernel
            (e.g. ``("i8", "i4")``); empty when weight-only models run on dequantized weights.
    """

    name: str
    half: str | None = None
    int8: bool = True
    weight_storage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Part:
    """One part of the network and the dtypes it runs in.

    Args:
        name: ``patch_embed.convs.{k}`` (a conv stem), ``patch_embed``, ``blocks.{i}.qkv`` /
            ``attn_qk`` / ``attn_av`` / ``proj`` / ``fc1`` / ``fc2`` / ``merge`` / ``norm1`` /
            ``norm2`` / ``softmax`` / ``gelu``,
            ``norm``, ``head``.
        kind: ``linear`` (activation x stored weight), ``conv`` (a conv stem's convolution,
            float at every precision), ``matmul`` (activation x activation),
            ``merge`` (token merging: similarity, gathers and scatters) or ``elementwise``.
        compute: dtype of the multiply (``f32``, ``bf16``, ``f16``, ``i8``).
        weight: dtype the deployed file stores the weight in (linear parts only).
        weight_bits: the weight's quantization grid (4 for int4 values, also in an i8 container).
        act_bits: the grid of the activation entering the part (32, 16 or an integer width).
    """

    name: str
    kind: str
    compute: str
    weight: str | None = None
    weight_bits: int | None = None
    act_bits: int = 32

    @property
    def op(self) -> str:
        """What the part computes: ``qkv``, ``norm`` (for ``norm1``, ``norm2``), ``merge``..."""
        return self.name.rsplit(".", 1)[-1].rstrip("12")

    @property
    def weight_only(self) -> bool:
        """Integer weights multiplied in float (decompressed in the kernel or before it)."""
        return self.weight in ("i8", "i4") and self.compute in ("f32", "bf16", "f16")


@dataclass(frozen=True)
class PrecisionPlan:
    """The dtype of every part of one config on one runtime. Build it with :func:`plan_for`.

    Args:
        w_bits, a_bits: the config's precision.
        runtime: the runtime family.
        float_dtype: the float dtype of everything that is not an integer matmul (the runtime's
            inference precision: ``f32`` or the 16-bit format).
        other_weights: dtype of stored parameters that are not matmul weights (biases, norms,
            embeddings, quantization scales are counted separately).
        parts: every part, in network order.
        notes: where a part runs at another width than the config names ("nearest").
    """

    w_bits: int
    a_bits: int
    runtime: str
    float_dtype: str
    other_weights: str
    parts: tuple[Part, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def precision(self) -> str:
        return precision_name(self.w_bits, self.a_bits)

    def part(self, name: str) -> Part:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(name)

    def linear_parts(self) -> Iterator[Part]:
        return (p for p in self.parts if p.kind == "linear")

    def _reference(self) -> Part | None:
        """The first block linear (the ends may run at io_bits), else any linear."""
        linears = list(self.linear_parts())
        blocks = [p for p in linears if p.name.startswith("blocks.")]
        chosen = blocks or linears
        return chosen[0] if chosen else None

    @classmethod
    def float32(cls, runtime: str) -> PrecisionPlan:
        """The plan of a float32 model outside the search space (a reference CNN or ViT)."""
        return cls(32, 32, runtime, "f32", "f32", ())

    @property
    def kind(self) -> str:
        """``int8``, ``weight-only`` or ``float``: how the block linears run."""
        ref = self._reference()
        if ref is None:
            return "float"
        if ref.compute == "i8":
            return "int8"
        return "weight-only" if ref.weight_only else "float"

    @property
    def label(self) -> str:
        """What ran, for ``latency_runtime``: e.g. ``openvino-int8``, ``openvino-w4-bf16``."""
        kind = self.kind
        if kind == "int8":
            core = "int8"
        elif kind == "weight-only":
            ref = self._reference()
            storage = ref.weight if ref is not None and ref.weight is not None else "i8"
            core = f"{storage.replace('i', 'w')}-{self.float_dtype}"
        else:
            core = self.float_dtype
        text = f"{self.runtime}-{core}"
        return f"{text} ({'; '.join(self.notes)})" if self.notes else text


def _block_names(i: int, merging: bool) -> list[tuple[str, str]]:
    names = [(f"blocks.{i}.norm1", "elementwise"), (f"blocks.{i}.qkv", "linear"),
             (f"blocks.{i}.attn_qk", "matmul"), (f"blocks.{i}.softmax", "elementwise"),
             (f"blocks.{i}.attn_av", "matmul"), (f"blocks.{i}.proj", "linear")]
    if merging:
        names.append((f"blocks.{i}.merge", "merge"))
    return names + [(f"blocks.{i}.norm2", "elementwise"), (f"blocks.{i}.fc1", "linear"),
                    (f"blocks.{i}.gelu", "elementwise"), (f"blocks.{i}.fc2", "linear")]


def plan_for(w_bits: int, a_bits: int, *, depth: int, merges: tuple[int, ...],
             caps: RuntimeCaps, io_bits: int = 8, stem_convs: int = 0) -> PrecisionPlan:
    """The precision plan of a config on a runtime.

    Args:
        w_bits, a_bits: the config's precision (must be valid, see :func:`invalid_reason`).
        depth, merges: the config's blocks and tokens merged in each.
        caps: what the runtime executes natively.
        io_bits: the patch embedding and the head run at ``max(io_bits, bits)`` (an fp32
            config is float end to end; with the default 8 an int4 config keeps 8-bit ends).
        stem_convs: the convolutions of a conv stem (``SupernetShape.stem_convs``), parts
            ``patch_embed.convs.{k}`` before the ``patch_embed`` projection. They run in the
            plan's float dtype at every precision: Brevitas quantizes linear layers only, and
            so does the deployed graph.
    """
    why = invalid_reason(w_bits, a_bits)
    if why is not None:
        raise ValueError(why)
    notes: list[str] = []
    wants_half = a_bits == 16
    if wants_half and caps.half is None:
        notes.append("no 16-bit float kernels: f32")
    float_dtype = caps.half if wants_half and caps.half else "f32"

    def linear(name: str, w: int, a: int) -> Part:
        if not _is_int(w):  # float weights: w == a (a valid pair) or a wider io layer
            stored = "f32" if float_dtype == "f32" else "f16"  # IR stores 16-bit as f16
            return Part(name, "linear", float_dtype, stored, None, a)
        storage = "i8" if w > 4 else "i4"
        if _is_int(a):
            if caps.int8:
                return Part(name, "linear", "i8", "i8", w, a)
            return Part(name, "linear", "f32", storage, w, a)  # dequantized, float kernels
        if storage not in caps.weight_storage and "i8" in caps.weight_storage:
            storage = "i8"
        return Part(name, "linear", float_dtype, storage, w, a)

    io_w = max(io_bits, w_bits) if _is_int(w_bits) else w_bits
    io_a = a_bits if not _is_int(a_bits) else max(io_bits, a_bits)
    if invalid_reason(io_w, io_a) is not None:  # e.g. io_bits=32 with an integer config
        io_w, io_a = (32, 32) if float_dtype == "f32" else (16, 16)
    conv_store = "f32" if float_dtype == "f32" else "f16"
    parts = [Part(f"patch_embed.convs.{k}", "conv", float_dtype, conv_store, None,
                  DTYPE_BITS[float_dtype]) for k in range(stem_convs)]
    parts.append(linear("patch_embed", io_w, io_a))
    for i in range(depth):
        for name, kind in _block_names(i, merges[i] > 0 if i < len(merges) else False):
            if kind == "linear":
                parts.append(linear(name, w_bits, a_bits))
            else:
                parts.append(Part(name, kind, float_dtype, act_bits=DTYPE_BITS[float_dtype]))
    parts += [Part("norm", "elementwise", float_dtype), linear("head", io_w, io_a)]
    ref = next(p for p in parts if p.name == ("blocks.0.qkv" if depth else "patch_embed"))
    if ref.compute == "i8" and min(w_bits, a_bits) < 8:
        notes.append(f"nearest to {precision_name(w_bits, a_bits)}: 8-bit kernels")
    elif ref.weight_only and ref.weight == "i8" and w_bits < 8:
        notes.append(f"nearest to w{w_bits}: int8 storage")
    if ref.weight_only and ref.weight not in caps.weight_storage:
        notes.append("weights dequantized at load")
    if _is_int(a_bits) and not caps.int8:
        notes.append("no integer kernels: dequantized")
    other = "f16" if float_dtype in ("bf16", "f16") else "f32"
    return PrecisionPlan(w_bits, a_bits, caps.name, float_dtype, other, tuple(parts),
                         tuple(notes))
