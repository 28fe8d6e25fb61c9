"""Layers of the weight-sharing supernet and the ViT block both it and its subnets run.

Dynamic layers (AutoFormer, arXiv 2107.00651, weight entanglement) own the largest weights and
compute with their leading slice; ``export()`` returns a plain ``nn.Module`` holding a copy of that
slice. The :class:`Block` is written once and runs with either kind of layer, so the supernet's
active path and an extracted subnet execute the same code.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointopt import tokens

__all__ = ["DynLinear", "DynQKV", "DynLayerNorm", "PatchEmbed", "ConvBNAct", "ConvStem", "Block",
           "LayerComplexity", "MatMul"]


class DynLinear(nn.Module):
    """Linear layer computing with ``weight[:out, :in]`` of its largest weight."""

    def __init__(self, in_max: int, out_max: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_max, in_max))
        self.bias = nn.Parameter(torch.zeros(out_max))
        # Xavier rather than ViT's usual trunc-normal(0.02): on the quickstart set, 12 epochs of
        # the largest subnet reached 0.55 validation accuracy against 0.38 (one run each).
        nn.init.xavier_uniform_(self.weight)
        self.active_in, self.active_out = in_max, out_max

    def set_active(self, in_features: int, out_features: int) -> None:
        self.active_in, self.active_out = in_features, out_features

    def sliced(self) -> tuple[Tensor, Tensor]:
        return self.weight[: self.active_out, : self.active_in], self.bias[: self.active_out]

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.sliced()
        return F.linear(x, w, b)

    def export(self) -> nn.Linear:
        w, b = self.sliced()
        out = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            out.weight.copy_(w)
            out.bias.copy_(b)
        return out


class DynQKV(DynLinear):
    """Fused q, k, v projection; a subnet keeps the first heads' rows of each of q, k and v."""

    def __init__(self, in_max: int, heads_max: int, head_dim: int) -> None:
        super().__init__(in_max, 3 * heads_max * head_dim)
        self.heads_max, self.head_dim = heads_max, head_dim
        self.active_heads = heads_max

    def set_heads(self, in_features: int, heads: int) -> None:
        self.active_in, self.active_heads = in_features, heads
        self.active_out = 3 * heads * self.head_dim

    def sliced(self) -> tuple[Tensor, Tensor]:
        width = self.active_heads * self.head_dim
        w = self.weight.view(3, self.heads_max * self.head_dim, -1)[:, :width, : self.active_in]
        b = self.bias.view(3, -1)[:, :width]
        return w.reshape(3 * width, self.active_in), b.reshape(3 * width)


class DynLayerNorm(nn.Module):
    """LayerNorm over the leading ``active`` channels."""

    def __init__(self, dim_max: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim_max))
        self.bias = nn.Parameter(torch.zeros(dim_max))
        self.eps = eps
        self.active = dim_max

    def forward(self, x: Tensor) -> Tensor:
        d = self.active
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], self.eps)

    def export(self) -> nn.LayerNorm:
        d = self.active
        out = nn.LayerNorm(d, eps=self.eps)
        with torch.no_grad():
            out.weight.copy_(self.weight[:d])
            out.bias.copy_(self.bias[:d])
        return out


@dataclass(frozen=True)
class LayerComplexity:
    """One layer's cost per image.

    Attributes:
        name: dotted name under the stem (e.g. ``convs.0.conv``, ``proj``).
        macs: multiply-accumulates per image.
        params: parameters (weights, biases, norm scales and shifts).
    """

    name: str
    macs: int
    params: int


def _proj_width(proj: nn.Module) -> int:
    return int(cast(Tensor, proj.weight).shape[1])


def _export(layer: nn.Module) -> nn.Module:
    """A dynamic layer's ``export()``, or a copy of a plain one (a subnet's)."""
    export = getattr(layer, "export", None)
    return export() if export is not None else copy.deepcopy(layer)


class PatchEmbed(nn.Module):
    """Non-overlapping patches flattened and projected by a Linear.

    A Linear over unfolded patches equals a stride-``patch`` convolution; keeping it a Linear lets
    quantization and the ONNX export treat it like every other matrix product.
    """

    def __init__(self, patch_size: int, proj: nn.Module, img_size: int | None = None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = proj
        self.img_size = img_size

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return self.proj(x.reshape(b, (h // p) * (w // p), c * p * p))

    def complexity(self, embed_dim: int) -> list[LayerComplexity]:
        """MACs and parameters per image with ``embed_dim`` outputs per patch."""
        if self.img_size is None:
            raise ValueError("PatchEmbed built without img_size cannot count its MACs")
        k = _proj_width(self.proj)
        patches = (self.img_size // self.patch_size) ** 2
        return [LayerComplexity("proj", patches * k * embed_dim, k * embed_dim + embed_dim)]

    def export(self) -> PatchEmbed:
        return PatchEmbed(self.patch_size, _export(self.proj), self.img_size)


class ConvBNAct(nn.Module):
    """3x3 stride-2 convolution, BatchNorm, ReLU: one unit of Xiao et al.'s convolutional stem.

    Args:
        in_chans, out_chans: channels in and out.
        in_size: side of the square input, for :meth:`complexity`.
    """

    def __init__(self, in_chans: int, out_chans: int, in_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        self.act = nn.ReLU()
        self.in_size = in_size

    @property
    def out_size(self) -> int:
        return (self.in_size + 2 - 3) // 2 + 1

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def complexity(self) -> list[LayerComplexity]:
        """The conv's MACs and parameters; BatchNorm's scale and shift (folded into the conv
        when deployed) count as parameters, not MACs."""
        c = self.conv
        k = c.in_channels * c.kernel_size[0] * c.kernel_size[1]
        return [LayerComplexity("conv", self.out_size**2 * k * c.out_channels, k * c.out_channels),
                LayerComplexity("bn", 0, 2 * c.out_channels)]


class ConvStem(nn.Module):
    """Convolutional stem (Xiao et al., "Early convolutions help transformers see better",
    NeurIPS 2021) in place of patchify: log2(patch) 3x3 stride-2 convolutions (BatchNorm, ReLU)
    with channels doubling from ``width``, then a 1x1 projection to the embedding.

    The convolutions are shared by every subnet whole; the projection is a Linear over the last
    feature map's channels (a 1x1 convolution), dynamic in the supernet so that a subnet uses its
    leading ``embed_dim`` outputs, as with the patch projection.

    Args:
        convs: the :class:`ConvBNAct` units, in order.
        proj: ``DynLinear`` (supernet) or ``nn.Linear`` (subnet) from the last channels.
    """

    def __init__(self, convs: nn.Sequential, proj: nn.Module) -> None:
        super().__init__()
        self.convs = convs
        self.proj = proj

    @classmethod
    def build(cls, *, in_chans: int, img_size: int, patch_size: int, width: int,
              proj: type[nn.Module] | None = None, embed_dim: int = 0) -> ConvStem:
        """The stem for ``patch_size`` (a power of 2), ending in ``proj(channels, embed_dim)``."""
        n = int(round(math.log2(patch_size)))
        if patch_size < 2 or 2**n != patch_size:
            raise ValueError(f"a conv stem needs a power-of-2 patch size, got {patch_size}")
        from jointopt.space import conv_stem_layout

        layout = conv_stem_layout(in_chans, img_size, patch_size, width)
        sides = [img_size] + [side for _, _, side in layout]
        units = [ConvBNAct(cin, cout, sides[i]) for i, (cin, cout, _) in enumerate(layout)]
        c = layout[-1][1]
        make = proj or nn.Linear
        return cls(nn.Sequential(*units), make(c, embed_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        return self.proj(x.flatten(2).transpose(1, 2))

    def complexity(self, embed_dim: int) -> list[LayerComplexity]:
        """MACs and parameters per image of every layer, the projection at ``embed_dim``."""
        out: list[LayerComplexity] = []
        size = 0
        for i, unit in enumerate(cast("list[ConvBNAct]", list(self.convs))):
            out += [LayerComplexity(f"convs.{i}.{lc.name}", lc.macs, lc.params)
                    for lc in unit.complexity()]
            size = unit.out_size
        k = _proj_width(self.proj)
        out.append(LayerComplexity("proj", size * size * k * embed_dim, k * embed_dim + embed_dim))
        return out

    def export(self) -> ConvStem:
        return ConvStem(copy.deepcopy(self.convs), _export(self.proj))


class MatMul(nn.Module):
    """``a @ b`` as a module, so the deployed graph names each attention matmul after it
    (``/blocks.0/attn_qk/MatMul``) and the precision plan can be checked against it."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a @ b


class Block(nn.Module):
    """Pre-norm transformer block with optional token merging between attention and MLP.

    Args:
        norm1, qkv, proj, norm2, fc1, fc2: the block's layers (dynamic or plain).
        num_heads: heads in use; each has ``head_dim`` channels.
        head_dim: channels per head (fixed across the supernet).
    """

    def __init__(self, norm1: nn.Module, qkv: nn.Module, proj: nn.Module, norm2: nn.Module,
                 fc1: nn.Module, fc2: nn.Module, *, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1, self.qkv, self.proj = norm1, qkv, proj
        self.norm2, self.fc1, self.fc2 = norm2, fc1, fc2
        self.act = nn.GELU()
        self.attn_qk, self.attn_av = MatMul(), MatMul()
        self.num_heads, self.head_dim = num_heads, head_dim

    def attention(self, x: Tensor, size: Tensor | None) -> tuple[Tensor, Tensor]:
        """Multi-head attention; returns the output and the keys averaged over heads."""
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = self.attn_qk(q * d**-0.5, k.transpose(-2, -1))
        if size is not None:
            # Proportional attention (ToMe, arXiv 2210.09461, eq. 1): a token standing for s
            # patches gets log(s) added to its logits, so merging keeps its attention mass.
            logits = logits + tokens.proportional_bias(size)
        out = self.attn_av(logits.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, h * d)
        return self.proj(out), k.mean(dim=1)

    def forward(self, x: Tensor, size: Tensor | None = None, r: int = 0,
                source: Tensor | None = None, prop_attn: bool = True
                ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Args:
            x: tokens [B, N, C], cls first.
            size: patches per token [B, N, 1], or None while no token has been merged.
            r: tokens to merge in this block.
            source: optional [B, N, N0] map of original tokens held by each token.
        Returns:
            x [B, N - r, C], size and source after merging.
        """
        attn, metric = self.attention(self.norm1(x), size if prop_attn else None)
        x = x + attn
        if r > 0:
            if size is None:
                size = torch.ones_like(x[..., :1])
            merge = tokens.bipartite_soft_matching(metric, r, class_token=True)
            if source is not None:
                source = tokens.merge_source(merge, x, source)
            x, size = tokens.merge_wavg(merge, x, size)
        x = x + self.fc2(self.act(self.fc1(self.norm2(x))))
        return x, size, source
