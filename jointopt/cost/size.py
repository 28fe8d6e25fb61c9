"""Analytic size costs of a subnet: parameters, MACs, BitOPs and stored bytes.

MACs count multiply-accumulates per image, layer by layer, with the tokens that are left after
each merge. Token merging happens between attention and the MLP (ToMe, arXiv 2210.09461), so a
block's attention runs on the tokens that entered it and its MLP on the tokens left. The
matching itself (a similarity product of about (N/2)^2 x head_dim per merging block) is left out:
it is small and its real cost shows in the measured latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from jointopt.space import JointConfig, SupernetShape, merge_limits

__all__ = ["LayerCost", "layer_costs", "size_costs", "effective_bits"]


@dataclass(frozen=True)
class LayerCost:
    """One matrix product of the subnet.

    Args:
        name: layer name, e.g. ``blocks.0.fc1``.
        macs: multiply-accumulates per image.
        weights: weight entries (0 for activation-by-activation products).
        w_bits: bit-width of the weight operand (the second activation for attention).
        a_bits: bit-width of the activation operand.
    """

    name: str
    macs: int
    weights: int
    w_bits: int
    a_bits: int


def effective_bits(cfg: JointConfig, io_bits: int) -> tuple[int, int, int, int]:
    """(w, a) bits of the blocks and (w, a) bits of the patch embedding and head.

    The patch embedding and the head run at max(io_bits, config bits), so an fp32 config is
    float from end to end.
    """
    return cfg.w_bits, cfg.a_bits, max(io_bits, cfg.w_bits), max(io_bits, cfg.a_bits)


def layer_costs(cfg: JointConfig, shape: SupernetShape, *, in_chans: int, num_classes: int,
                io_bits: int = 8) -> list[LayerCost]:
    """Every matrix product of ``cfg`` with its MACs per image and operand bit-widths."""
    w, a, io_w, io_a = effective_bits(cfg, io_bits)
    e, hd, p = cfg.embed_dim, shape.head_dim, shape.patch_size
    patches = shape.num_tokens - 1
    out = [LayerCost("patch_embed.proj", patches * in_chans * p * p * e, in_chans * p * p * e,
                     io_w, io_a)]
    limits = merge_limits(shape.num_tokens, cfg.merges)
    for i, ((n, _), r, h, m) in enumerate(
        zip(limits, cfg.merges, cfg.heads, cfg.mlp_dims(), strict=True)
    ):
        width = h * hd
        left = n - r
        out += [
            LayerCost(f"blocks.{i}.qkv", n * e * 3 * width, e * 3 * width, w, a),
            # q @ k^T and attn @ v multiply two activations: both operands count at a_bits.
            LayerCost(f"blocks.{i}.attn", 2 * h * n * n * hd, 0, a, a),
            LayerCost(f"blocks.{i}.proj", n * width * e, width * e, w, a),
            LayerCost(f"blocks.{i}.fc1", left * e * m, e * m, w, a),
            LayerCost(f"blocks.{i}.fc2", left * m * e, m * e, w, a),
        ]
    out.append(LayerCost("head", e * num_classes, e * num_classes, io_w, io_a))
    return out


def count_params(cfg: JointConfig, shape: SupernetShape, *, in_chans: int,
                 num_classes: int) -> tuple[int, int]:
    """(parameters of the extracted subnet, of which Linear weight entries)."""
    e, hd, p = cfg.embed_dim, shape.head_dim, shape.patch_size
    linear = in_chans * p * p * e + e * num_classes
    other = e + e + shape.num_tokens * e + 2 * e + num_classes  # biases, cls, pos, final norm
    for h, m in zip(cfg.heads, cfg.mlp_dims(), strict=True):
        width = h * hd
        linear += e * 3 * width + width * e + 2 * e * m
        other += 4 * e + 3 * width + e + m + e  # two norms, four biases
    return linear + other, linear


def size_costs(cfg: JointConfig, shape: SupernetShape, *, in_chans: int, num_classes: int,
               io_bits: int = 8) -> dict[str, int]:
    """params, macs, bitops and model_bytes of ``cfg``.

    model_bytes stores Linear weights at their bit-width (packed), a 32-bit scale per output
    channel of each integer layer, and every other parameter (biases, norms, embeddings) at 16
    bits for fp16 configs and 32 bits otherwise.
    """
    layers = layer_costs(cfg, shape, in_chans=in_chans, num_classes=num_classes,
                         io_bits=io_bits)
    params, linear = count_params(cfg, shape, in_chans=in_chans, num_classes=num_classes)
    macs = sum(lc.macs for lc in layers)
    bitops = sum(lc.macs * lc.w_bits * lc.a_bits for lc in layers)
    other_bits = 16 if cfg.w_bits == 16 else 32
    bits = 0.0
    for lc in layers:
        if lc.weights:
            bits += lc.weights * lc.w_bits
            if lc.w_bits < 16:
                bits += 32 * (lc.weights // max(1, _in_features(lc, cfg, shape, in_chans)))
    bits += (params - linear) * other_bits
    return {"params": params, "macs": macs, "bitops": bitops, "model_bytes": int(bits // 8)}


def _in_features(lc: LayerCost, cfg: JointConfig, shape: SupernetShape, in_chans: int) -> int:
    """Input width of a Linear, so weights // in_features gives its output channels."""
    if lc.name == "patch_embed.proj":
        return in_chans * shape.patch_size**2
    if lc.name == "head":
        return cfg.embed_dim
    i = int(lc.name.split(".")[1])
    if lc.name.endswith(".proj"):
        return cfg.heads[i] * shape.head_dim
    if lc.name.endswith(".fc2"):
        return cfg.mlp_dims()[i]
    return cfg.embed_dim
