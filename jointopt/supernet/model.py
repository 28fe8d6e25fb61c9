"""The weight-sharing ViT supernet and the standalone subnets it extracts."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from jointopt.errors import UserError
from jointopt.space import JointConfig, SearchSpace, SupernetShape
from jointopt.supernet.layers import (
    Block,
    ConvStem,
    DynLayerNorm,
    DynLinear,
    DynQKV,
    PatchEmbed,
)

__all__ = ["ViTSupernet", "SubnetViT"]

ARCH_FORMAT = "jointopt.supernet/1"


class _ViT(nn.Module):
    """What the supernet's active path and an extracted subnet share: the forward pass."""

    patch_embed: PatchEmbed | ConvStem
    blocks: nn.ModuleList
    norm: nn.Module
    head: nn.Module
    prop_attn: bool = True
    pool: str = "avg"

    def _cls_pos(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _active(self) -> tuple[int, tuple[int, ...]]:
        """(depth, merges per block)."""
        raise NotImplementedError

    def embed(self, img: Tensor) -> Tensor:
        """Image [B, C, H, W] to the blocks' input [B, 1 + patches, C], cls first, positions
        added."""
        x = self.patch_embed(img)
        cls, pos = self._cls_pos()
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return x + pos

    def forward_blocks(self, x: Tensor, *, track_source: bool = False
                       ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Run the active blocks on embedded tokens; returns tokens, sizes and sources."""
        depth, merges = self._active()
        size: Tensor | None = None
        source: Tensor | None = None
        if track_source:
            source = torch.eye(x.shape[1], device=x.device).expand(x.shape[0], -1, -1)
        for blk, r in zip(list(self.blocks)[:depth], merges, strict=True):
            x, size, source = blk(x, size, r, source, prop_attn=self.prop_attn)
        return x, size, source

    def forward(self, img: Tensor) -> Tensor:
        x, size, _ = self.forward_blocks(self.embed(img))
        if self.pool == "cls":
            return self.head(self.norm(x[:, 0]))
        if self.pool == "max":
            # A defect is a few patches: max keeps it, a mean over 64 tokens dilutes it. The norm
            # comes after pooling so the head sees unit-scale features (stable distillation).
            return self.head(self.norm(x[:, 1:].amax(dim=1)))
        # Size-weighted mean of the patch tokens: a merged token stands for `size` patches, so
        # the mean equals the unmerged one's when merged tokens are exact averages.
        return self.head(self.norm(_weighted_mean(x[:, 1:], size)))


class SubnetViT(_ViT):
    """A plain ViT with its own weights: what :meth:`ViTSupernet.extract` returns."""

    def __init__(self, patch_embed: PatchEmbed | ConvStem, cls_token: Tensor, pos_embed: Tensor,
                 blocks: Sequence[Block], norm: nn.Module, head: nn.Module, *,
                 config: JointConfig) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.cls_token = nn.Parameter(cls_token.detach().clone())
        self.pos_embed = nn.Parameter(pos_embed.detach().clone())
        self.blocks = nn.ModuleList(blocks)
        self.norm, self.head = norm, head
        self.config = config

    def _cls_pos(self) -> tuple[Tensor, Tensor]:
        return self.cls_token, self.pos_embed

    def _active(self) -> tuple[int, tuple[int, ...]]:
        return len(self.blocks), self.config.merges


class _DynBlock(Protocol):
    """A supernet :class:`Block` as typed: its layers are the dynamic ones (``Block`` itself
    holds plain ``nn.Module``s, since subnets share it)."""

    norm1: DynLayerNorm
    norm2: DynLayerNorm
    qkv: DynQKV
    proj: DynLinear
    fc1: DynLinear
    fc2: DynLinear
    num_heads: int


class ViTSupernet(_ViT):
    """AutoFormer-style weight-entangled ViT.

    Args:
        shape: the largest network (depth, embed_dim, heads of ``head_dim``, mlp_ratio, patches).
        in_chans: image channels.
        num_classes: classifier outputs.
        space: the search space ``sample`` draws from; defaults to every depth, heads and a grid
            of widths and ratios up to ``shape``.
    """

    norm: DynLayerNorm
    head: DynLinear

    def __init__(self, shape: SupernetShape | None = None, *, in_chans: int = 1,
                 num_classes: int = 6, space: SearchSpace | None = None) -> None:
        super().__init__()
        s = self.shape = shape or SupernetShape()
        self.in_chans, self.num_classes = in_chans, num_classes
        self.space = space or _default_space(s)
        if self.space.supernet != s:
            raise ValueError(f"space was built for {self.space.supernet}, supernet is {s}")
        e, hd = s.embed_dim, s.head_dim
        if s.stem == "conv":
            self.patch_embed = ConvStem.build(in_chans=in_chans, img_size=s.img_size,
                                              patch_size=s.patch_size, width=s.stem_width,
                                              proj=DynLinear, embed_dim=e)
        else:
            self.patch_embed = PatchEmbed(s.patch_size, DynLinear(in_chans * s.patch_size**2, e),
                                          s.img_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(torch.zeros(1, s.num_tokens, e))
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            Block(DynLayerNorm(e), DynQKV(e, s.num_heads, hd), DynLinear(s.num_heads * hd, e),
                  DynLayerNorm(e), DynLinear(e, s.mlp_dim), DynLinear(s.mlp_dim, e),
                  num_heads=s.num_heads, head_dim=hd)
            for _ in range(s.depth)
        )
        self.norm = DynLayerNorm(e)
        self.head = DynLinear(e, num_classes)
        self.pool = s.pool
        self._config = self.max_config
        self.set_active(self._config)

    # ---- configs ------------------------------------------------------------------------
    @property
    def max_config(self) -> JointConfig:
        """The whole supernet: every block, width, head and the largest MLP, fp32, no merging."""
        s = self.shape
        return JointConfig(depth=s.depth, embed_dim=s.embed_dim, num_heads=s.num_heads,
                           mlp_ratio=s.mlp_ratio, tome_r=0, w_bits=32, a_bits=32)

    @property
    def active_config(self) -> JointConfig:
        return self._config

    def sample(self, rng: np.random.Generator,
               axes: Sequence[str] = ("depth", "embed_dim", "num_heads", "mlp_ratio")
               ) -> JointConfig:
        """Draw a config from ``space`` (architecture axes by default) with ``rng``."""
        return self.space.sample(rng, axes=axes)

    def _check(self, cfg: JointConfig) -> None:
        self.space.validate(cfg)
        if not cfg.is_float:
            # Quantization happens on an extracted copy (jointopt.quant); the supernet itself
            # always computes in floating point.
            raise UserError(f"w_bits={cfg.w_bits}, a_bits={cfg.a_bits}: the supernet runs "
                            "float only; quantize an extracted subnet instead")

    def set_active(self, cfg: JointConfig) -> ViTSupernet:
        """Make ``cfg`` the path that ``forward`` runs; weights stay shared."""
        self._check(cfg)
        e = cfg.embed_dim
        proj = cast(DynLinear, self.patch_embed.proj)
        proj.set_active(proj.weight.shape[1], e)
        for i, blk in enumerate(self._dyn_blocks(cfg.depth)):
            h, m = cfg.heads[i], cfg.mlp_dims()[i]
            blk.norm1.active = blk.norm2.active = e
            blk.qkv.set_heads(e, h)
            blk.proj.set_active(h * self.shape.head_dim, e)
            blk.fc1.set_active(e, m)
            blk.fc2.set_active(m, e)
            blk.num_heads = h
        self.norm.active = e
        self.head.set_active(e, self.num_classes)
        self._config = cfg
        return self

    def _dyn_blocks(self, depth: int) -> list[_DynBlock]:
        return cast("list[_DynBlock]", list(self.blocks[:depth]))

    def _cls_pos(self) -> tuple[Tensor, Tensor]:
        e = self._config.embed_dim
        return self.cls_token[..., :e], self.pos_embed[..., :e]

    def _active(self) -> tuple[int, tuple[int, ...]]:
        return self._config.depth, self._config.merges

    def extract(self, cfg: JointConfig) -> SubnetViT:
        """A standalone float subnet holding sliced copies of the weights of ``cfg``."""
        previous = self._config
        self.set_active(cfg)
        try:
            blocks = []
            for i, blk in enumerate(self._dyn_blocks(cfg.depth)):
                blocks.append(Block(blk.norm1.export(), blk.qkv.export(), blk.proj.export(),
                                    blk.norm2.export(), blk.fc1.export(), blk.fc2.export(),
                                    num_heads=cfg.heads[i], head_dim=self.shape.head_dim))
            cls, pos = self._cls_pos()
            sub = SubnetViT(self.patch_embed.export(), cls, pos, blocks, self.norm.export(),
                            self.head.export(), config=cfg)
            sub.prop_attn = self.prop_attn
            sub.pool = self.pool
        finally:
            self.set_active(previous)
        return sub.train(self.training)

    # ---- persistence --------------------------------------------------------------------
    def arch(self) -> dict[str, Any]:
        return {"format": ARCH_FORMAT, "shape": self.shape.__dict__.copy(),
                "in_chans": self.in_chans, "num_classes": self.num_classes,
                "choices": {k: list(v) for k, v in self.space.choices.items()}}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors weights) and ``path.json`` (architecture); no pickle."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in self.state_dict().items()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_file(state, str(tmp))
        _arch_path(path).write_text(json.dumps(self.arch(), indent=2))
        tmp.replace(path)  # atomic: a killed save never leaves a half-written checkpoint
        return path

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> ViTSupernet:
        if arch.get("format") != ARCH_FORMAT:
            raise UserError(f"unknown supernet format {arch.get('format')!r}")
        shape = SupernetShape(**arch["shape"])
        space = SearchSpace(supernet=shape,
                            choices={k: tuple(v) for k, v in arch["choices"].items()})
        return cls(shape, in_chans=arch["in_chans"], num_classes=arch["num_classes"],
                   space=space)

    @classmethod
    def load(cls, path: str | Path) -> ViTSupernet:
        path = Path(path)
        if not path.is_file() or not _arch_path(path).is_file():
            raise UserError(f"{path}: no supernet checkpoint (weights and {_arch_path(path).name})")
        net = cls.from_arch(json.loads(_arch_path(path).read_text()))
        net.load_state_dict(load_file(str(path)))
        return net.eval()

    def copy(self) -> ViTSupernet:
        return copy.deepcopy(self)


def _weighted_mean(patches: Tensor, size: Tensor | None) -> Tensor:
    """Mean of patch tokens weighted by how many patches each stands for (ToMe sizes)."""
    if size is None:
        return patches.mean(dim=1)
    w = size[:, 1:]
    return (patches * w).sum(dim=1) / w.sum(dim=1)


def _arch_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _default_space(s: SupernetShape) -> SearchSpace:
    widths = sorted({max(16, s.embed_dim * k // 4) for k in (1, 2, 3, 4)})
    ratios = sorted({s.mlp_ratio * k / 4 for k in (2, 3, 4)})
    return SearchSpace(supernet=s, choices={
        "depth": tuple(range(1, s.depth + 1)), "embed_dim": tuple(widths),
        "num_heads": tuple(range(1, s.num_heads + 1)), "mlp_ratio": tuple(ratios),
        "tome_r": (0,), "w_bits": (32,), "a_bits": (32,)})
