"""Analytic size costs of a subnet: parameters, MACs, BitOPs and stored bytes, read off the plan.

:func:`layer_costs` lists every part of the precision plan (:mod:`jointopt.precision`) with its
work per image: the matrix products (MACs, weight entries, widths, activation elements in and
out) and the element-wise parts (norms, softmax, GELU, the merge). Widths come from the config
and the supernet shape when each entry is built, never from parsing layer names afterwards.

MACs count multiply-accumulates per image with the tokens left after each merge. Token merging
happens between attention and the MLP (ToMe, arXiv 2210.09461), so a block's attention runs on
the tokens that entered it and its MLP on the tokens left. The merge's own work (a similarity
product of (N/2)^2 x head_dim, the ranking and the weighted sums) is its own entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from jointopt.precision import DTYPE_BITS, DTYPE_BYTES, Part, PrecisionPlan
from jointopt.space import JointConfig, SupernetShape, merge_limits

__all__ = ["LayerCost", "layer_costs", "size_costs", "count_params", "ELEMENTWISE_OPS"]

#: (adds, multiplies) per element of the element-wise parts, counted as a vectorised CPU kernel
#: computes them. LayerNorm: mean, centre, variance sum, then scale by 1/std, gain and bias.
#: Softmax: max, subtract, exp (a degree-5 polynomial after range reduction), sum, divide.
#: GELU (tanh form): the cubic, the tanh (rational approximation) and the products around it.
#: Merge: per channel of each token, the size-weighted sum and the divide (gathers and
#: scatters only move data).
ELEMENTWISE_OPS: dict[str, tuple[int, int]] = {
    "norm": (4, 3), "softmax": (8, 7), "gelu": (7, 10), "merge": (2, 2)}


@dataclass(frozen=True)
class LayerCost:
    """One part of the subnet and its work per image.

    Args:
        part: the plan's entry (name, kind, compute and weight dtypes).
        macs: multiply-accumulates (matrix products; for the merge, its similarity product).
        weights: weight entries (0 for activation-by-activation products and element-wise parts).
        out_features: output channels of a linear part (one scale each when its weights are
            integers).
        act_in, act_out: activation elements read and written.
        elements: elements an element-wise part (or the merge's weighted sums) computes on.
    """

    part: Part
    macs: int = 0
    weights: int = 0
    out_features: int = 0
    act_in: int = 0
    act_out: int = 0
    elements: int = 0

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def operand_bits(self) -> tuple[int, int]:
        """Bit-widths of the two operands of each multiply, as executed."""
        b = DTYPE_BITS[self.part.compute]
        return b, b


def layer_costs(cfg: JointConfig, shape: SupernetShape, plan: PrecisionPlan, *,
                in_chans: int, num_classes: int) -> list[LayerCost]:
    """Every part of ``plan`` with its work per image for ``cfg``."""
    e, hd, p = cfg.embed_dim, shape.head_dim, shape.patch_size
    patches = shape.num_tokens - 1
    limits = merge_limits(shape.num_tokens, cfg.merges)

    def linear(name: str, tokens: int, fin: int, fout: int) -> LayerCost:
        return LayerCost(plan.part(name), macs=tokens * fin * fout, weights=fin * fout,
                         out_features=fout, act_in=tokens * fin, act_out=tokens * fout)

    out = []
    convs = shape.stem_convs(in_chans)
    for k, (cin, cout, side) in enumerate(convs):  # a conv stem: 3x3 convolutions, then 1x1
        try:
            part = plan.part(f"patch_embed.convs.{k}")
        except KeyError:
            raise ValueError(f"the precision plan has no part patch_embed.convs.{k}: build it "
                             f"with plan_for(..., stem_convs={len(convs)})") from None
        out.append(LayerCost(part, macs=side * side * 9 * cin * cout, weights=9 * cin * cout,
                             out_features=cout, act_in=4 * side * side * cin,
                             act_out=side * side * cout))
    fin = convs[-1][1] if convs else in_chans * p * p
    out.append(linear("patch_embed", patches, fin, e))
    for i, ((n, _), r, h, m) in enumerate(
        zip(limits, cfg.merges, cfg.heads, cfg.mlp_dims(), strict=True)
    ):
        width, left = h * hd, n - r
        b = f"blocks.{i}."
        out += [
            LayerCost(plan.part(b + "norm1"), elements=n * e, act_in=n * e, act_out=n * e),
            linear(b + "qkv", n, e, 3 * width),
            LayerCost(plan.part(b + "attn_qk"), macs=h * n * n * hd, act_in=2 * n * width,
                      act_out=h * n * n),
            LayerCost(plan.part(b + "softmax"), elements=h * n * n, act_in=h * n * n,
                      act_out=h * n * n),
            LayerCost(plan.part(b + "attn_av"), macs=h * n * n * hd,
                      act_in=h * n * n + n * width, act_out=n * width),
            linear(b + "proj", n, width, e),
        ]
        if r > 0:
            na, nb = (n + 1) // 2, n // 2
            out.append(LayerCost(plan.part(b + "merge"), macs=na * nb * hd,
                                 act_in=n * (e + 1) + n * hd, act_out=left * (e + 1),
                                 elements=n * (e + 1)))
        out += [
            LayerCost(plan.part(b + "norm2"), elements=left * e, act_in=left * e,
                      act_out=left * e),
            linear(b + "fc1", left, e, m),
            LayerCost(plan.part(b + "gelu"), elements=left * m, act_in=left * m,
                      act_out=left * m),
            linear(b + "fc2", left, m, e),
        ]
    out += [LayerCost(plan.part("norm"), elements=e, act_in=e, act_out=e),
            linear("head", 1, e, num_classes)]
    return out


def count_params(cfg: JointConfig, shape: SupernetShape, *, in_chans: int,
                 num_classes: int) -> tuple[int, int]:
    """(parameters of the extracted subnet, of which Linear weight entries)."""
    e, hd, p = cfg.embed_dim, shape.head_dim, shape.patch_size
    convs = shape.stem_convs(in_chans)
    if convs:  # conv stem: the 3x3 kernels are weights too; BatchNorm's scale and shift are not
        linear = sum(9 * cin * cout for cin, cout, _ in convs) + convs[-1][1] * e
        other = sum(2 * cout for _, cout, _ in convs)
    else:
        linear, other = in_chans * p * p * e, 0
    linear += e * num_classes
    other += e + e + shape.num_tokens * e + 2 * e + num_classes  # biases, cls, pos, final norm
    for h, m in zip(cfg.heads, cfg.mlp_dims(), strict=True):
        width = h * hd
        linear += e * 3 * width + width * e + 2 * e * m
        other += 4 * e + 3 * width + e + m + e  # two norms, four biases
    return linear + other, linear


def _merge_constant_bytes(n: int, scale: float) -> float:
    """The weight a merging block on ``n`` tokens adds to the deployed graph (tokens.py, matrix
    merge): the 0/1 matrix marking each B token's own column, [n // 2, n] in the float storage
    dtype. Its int64 index ranges are shape and index constants, which no weight count
    includes (``Runtime.weight_bytes`` leaves them out too)."""
    return (n // 2) * n * scale


def _stored_bytes(layers: list[LayerCost], plan: PrecisionPlan, other_params: int,
                  merging: list[int]) -> float:
    """Bytes of the deployed weights: each linear's weights in their stored dtype, with one
    scale (in the float storage dtype) and one zero point (in the weight dtype) per output
    channel for integer weights, a scale and zero point for each quantized activation, every
    other parameter in the plan's float storage dtype, and the constants of each merge (token
    counts entering the merging blocks in ``merging``)."""
    scale = DTYPE_BYTES[plan.other_weights]
    total = other_params * scale + sum(_merge_constant_bytes(n, scale) for n in merging)
    for lc in layers:
        if not lc.weights:
            continue
        stored = lc.part.weight or plan.other_weights
        total += lc.weights * DTYPE_BYTES[stored]
        if stored in ("i8", "i4"):
            total += lc.out_features * (scale + DTYPE_BYTES[stored])
        if lc.part.compute == "i8":
            total += scale + 1  # the input's scale and zero point
    return total


def size_costs(cfg: JointConfig, shape: SupernetShape, plan: PrecisionPlan, *, in_chans: int,
               num_classes: int) -> dict[str, int]:
    """params, macs, bitops and model_bytes of ``cfg`` under ``plan``.

    ``macs`` counts the matrix products the network is defined by (linear layers and the
    attention products); ``bitops`` charges each of them at the bit-widths its multiply runs in
    (a weight-only layer multiplies in float, whatever its storage).
    """
    layers = layer_costs(cfg, shape, plan, in_chans=in_chans, num_classes=num_classes)
    params, linear = count_params(cfg, shape, in_chans=in_chans, num_classes=num_classes)
    products = [lc for lc in layers if lc.part.kind in ("linear", "conv", "matmul")]
    macs = sum(lc.macs for lc in products)
    bitops = sum(lc.macs * lc.operand_bits[0] * lc.operand_bits[1] for lc in products)
    merging = [n for (n, _), r in zip(merge_limits(shape.num_tokens, cfg.merges), cfg.merges,
                                      strict=True) if r > 0]
    model_bytes = _stored_bytes(layers, plan, params - linear, merging)
    return {"params": params, "macs": macs, "bitops": bitops, "model_bytes": int(model_bytes)}


def float_size_costs(cfg: JointConfig, shape: SupernetShape, *, in_chans: int,
                     num_classes: int) -> dict[str, int]:
    """:func:`size_costs` of ``cfg``'s architecture and merging in float32, on no particular
    runtime (params and MACs do not depend on the precision or the runtime)."""
    from jointopt.precision import RuntimeCaps, plan_for

    plan = plan_for(32, 32, depth=cfg.depth, merges=cfg.merges, caps=RuntimeCaps("float32"),
                    stem_convs=len(shape.stem_convs(in_chans)))
    return size_costs(cfg, shape, plan, in_chans=in_chans, num_classes=num_classes)
