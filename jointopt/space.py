"""The joint configuration and the search space it is drawn from.

A :class:`JointConfig` names one subnet of the supernet together with its token-merging and
bit-width settings. A :class:`SearchSpace` holds the supernet's shape (what can run) and the
choices a search draws from, validates configs and turns them into Optuna parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jointopt._yaml import check_keys, load_yaml, want
from jointopt.errors import UserError, field_error

__all__ = ["JointConfig", "SearchSpace", "SupernetShape", "BITS", "PER_LAYER_FIELDS"]

#: Bit-widths a config may use: 32 = fp32, 16 = fp16, the rest integer (Brevitas).
BITS: tuple[int, ...] = (32, 16, 8, 6, 4, 3, 2)
PER_LAYER_FIELDS: tuple[str, ...] = ("num_heads", "mlp_ratio", "tome_r")
SCALAR_FIELDS: tuple[str, ...] = ("depth", "embed_dim", "w_bits", "a_bits")
CONFIG_FIELDS: tuple[str, ...] = (
    "depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r", "w_bits", "a_bits",
)

PerLayerInt = int | tuple[int, ...]
PerLayerFloat = float | tuple[float, ...]


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


@dataclass(frozen=True)
class JointConfig:
    """One point of the joint space: architecture, token merging and bit-widths.

    Per-layer fields hold one value for every active layer, or a tuple of ``depth`` values.
    """

    depth: int
    embed_dim: int
    num_heads: PerLayerInt
    mlp_ratio: PerLayerFloat
    tome_r: PerLayerInt = 0
    w_bits: int = 32
    a_bits: int = 32

    def __post_init__(self) -> None:
        for name in PER_LAYER_FIELDS:
            object.__setattr__(self, name, _freeze(getattr(self, name)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> JointConfig:
        """Parse a config, rejecting unknown or missing keys with an error naming them."""
        if not isinstance(data, Mapping):
            raise field_error(source, "config", data, "must be a mapping of config fields")
        check_keys(data, CONFIG_FIELDS, source=source, prefix="")
        required = ("depth", "embed_dim", "num_heads", "mlp_ratio")
        for key in required:
            if key not in data:
                raise field_error(source, key, None, "is required")
        kwargs: dict[str, Any] = {}
        for key in ("depth", "embed_dim", "w_bits", "a_bits"):
            if key in data:
                kwargs[key] = want(data[key], int, source, key)
        for key, typ in (("num_heads", int), ("mlp_ratio", float), ("tome_r", int)):
            if key not in data:
                continue
            v = data[key]
            if isinstance(v, list | tuple):
                if not v:
                    raise field_error(source, key, v, "must not be an empty list")
                kwargs[key] = tuple(want(x, typ, source, key) for x in v)
            else:
                kwargs[key] = want(v, typ, source, key)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML form (lists for per-layer fields)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def layer(self, name: str) -> tuple[Any, ...]:
        """The per-layer field ``name`` expanded to ``depth`` values."""
        v = getattr(self, name)
        if isinstance(v, tuple):
            return v
        return (v,) * self.depth

    @property
    def heads(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.layer("num_heads"))

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(float(m) for m in self.layer("mlp_ratio"))

    @property
    def merges(self) -> tuple[int, ...]:
        return tuple(int(r) for r in self.layer("tome_r"))

    def mlp_dims(self) -> tuple[int, ...]:
        """MLP hidden width of each layer: round(mlp_ratio * embed_dim)."""
        return tuple(int(round(m * self.embed_dim)) for m in self.ratios)

    def canonical(self) -> JointConfig:
        """The same config with per-layer fields collapsed to a scalar where all layers agree."""
        kw: dict[str, Any] = {}
        for name in PER_LAYER_FIELDS:
            vals = self.layer(name)
            kw[name] = vals[0] if len(set(vals)) == 1 else tuple(vals)
        return dataclasses.replace(self, **kw)

    def key(self) -> str:
        """A stable string identifying the config (equal configs give equal keys)."""
        c = self.canonical()
        parts = [f"d{c.depth}", f"e{c.embed_dim}"]
        for name, tag in (("num_heads", "h"), ("mlp_ratio", "m"), ("tome_r", "r")):
            v = getattr(c, name)
            vals = v if isinstance(v, tuple) else (v,)
            parts.append(tag + "-".join(f"{x:g}" for x in vals))
        parts.append(f"w{c.w_bits}a{c.a_bits}")
        return "_".join(parts)

    @property
    def is_float(self) -> bool:
        return self.w_bits >= 16 and self.a_bits >= 16


@dataclass(frozen=True)
class SupernetShape:
    """The largest network a supernet holds: every subnet is a slice of it."""

    img_size: int = 64
    patch_size: int = 8
    depth: int = 6
    embed_dim: int = 192
    num_heads: int = 4
    head_dim: int = 32
    mlp_ratio: float = 4.0
    #: What the head reads: "avg" (size-weighted mean of the patch tokens), "max" (channel-wise
    #: max over patch tokens) or "cls".
    pool: str = "avg"
    #: How images become tokens: "patch" (patchify: one Linear over each patch) or "conv"
    #: (Xiao et al., NeurIPS 2021: log2(patch_size) 3x3 stride-2 convolutions with
    #: ``stem_width``, 2x, 4x ... channels, then a 1x1 projection), shared by every subnet.
    stem: str = "patch"
    stem_width: int = 16

    @property
    def num_tokens(self) -> int:
        """Tokens entering the first block: patches plus the cls token."""
        return (self.img_size // self.patch_size) ** 2 + 1

    @property
    def mlp_dim(self) -> int:
        return int(round(self.mlp_ratio * self.embed_dim))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None,
                  prefix: str = "supernet") -> SupernetShape:
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(data, names, source=source, prefix=prefix)
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "pool" and "pool" in data:
                pool = want(data["pool"], str, source, f"{prefix}.pool")
                if pool not in ("avg", "max", "cls"):
                    raise field_error(source, f"{prefix}.pool", pool, "must be avg, max or cls")
                kw["pool"] = pool
                continue
            if f.name == "stem" and "stem" in data:
                stem = want(data["stem"], str, source, f"{prefix}.stem")
                if stem not in ("patch", "conv"):
                    raise field_error(source, f"{prefix}.stem", stem, "must be patch or conv")
                kw["stem"] = stem
                continue
            if f.name in data:
                typ = float if f.name == "mlp_ratio" else int
                v = want(data[f.name], typ, source, f"{prefix}.{f.name}")
                if v <= 0:
                    raise field_error(source, f"{prefix}.{f.name}", v, "must be positive")
                kw[f.name] = v
        shape = cls(**kw)
        if shape.img_size % shape.patch_size:
            raise field_error(source, f"{prefix}.patch_size", shape.patch_size,
                              f"must divide img_size {shape.img_size}")
        p = shape.patch_size
        if shape.stem == "conv" and (p < 2 or p & (p - 1)):
            raise field_error(source, f"{prefix}.patch_size", p,
                              "must be a power of 2 (2, 4, 8, ...) with stem: conv")
        return shape


def merge_limits(num_tokens: int, merges: Sequence[int]) -> list[tuple[int, int]]:
    """(tokens entering, most merges allowed) for each block, following ``merges``."""
    out = []
    n = num_tokens
    for r in merges:
        limit = (n - 1) // 2  # the cls token never merges; each merge pairs two others
        out.append((n, limit))
        n -= min(r, limit)
    return out


@dataclass(frozen=True)
class SearchSpace:
    """Choices for each axis over a supernet shape.

    Args:
        supernet: the shape every config must fit into.
        choices: for each config field, the values a search draws from. Per-layer fields get one
            Optuna parameter per layer index (``num_heads_0``, ``num_heads_1``, ...).
    """

    supernet: SupernetShape
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        for name in CONFIG_FIELDS:
            if name not in self.choices or not self.choices[name]:
                raise field_error(self.source, f"choices.{name}", None, "needs at least one value")
        for b in self.choices["w_bits"] + self.choices["a_bits"]:
            if b not in BITS:
                raise field_error(self.source, "choices.w_bits/a_bits", b, f"must be one of {BITS}")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        data = load_yaml(path)
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> SearchSpace:
        check_keys(data, ("supernet", "choices"), source=source, prefix="")
        shape = SupernetShape.from_dict(data.get("supernet") or {}, source=source)
        raw = data.get("choices")
        if not isinstance(raw, Mapping):
            raise field_error(source, "choices", raw, "must be a mapping of field: [values]")
        check_keys(raw, CONFIG_FIELDS, source=source, prefix="choices")
        choices: dict[str, tuple[Any, ...]] = {}
        for name in CONFIG_FIELDS:
            vals = raw.get(name)
            if vals is None:
                vals = [0] if name == "tome_r" else [32] if name.endswith("bits") else None
            if not isinstance(vals, list) or not vals:
                raise field_error(source, f"choices.{name}", vals, "must be a non-empty list")
            typ = float if name == "mlp_ratio" else int
            choices[name] = tuple(sorted({want(v, typ, source, f"choices.{name}") for v in vals}))
        space = cls(supernet=shape, choices=choices, source=source)
        for cfg, what in ((space.max_config, "largest"), (space.min_config, "smallest")):
            try:
                space.validate(cfg)
            except UserError as e:
                raise UserError(
                    f"{source}: the {what} config of the choices cannot run: {e}") from e
        return space

    # ---- named configs ------------------------------------------------------------------
    @property
    def max_config(self) -> JointConfig:
        """Largest architecture in the choices, fp32, no merging: the baseline."""
        c = self.choices
        return JointConfig(depth=max(c["depth"]), embed_dim=max(c["embed_dim"]),
                           num_heads=max(c["num_heads"]), mlp_ratio=max(c["mlp_ratio"]),
                           tome_r=0, w_bits=32, a_bits=32)

    @property
    def min_config(self) -> JointConfig:
        """Smallest architecture, fewest bits and most merging that the choices allow."""
        c = self.choices
        depth = min(c["depth"])
        w = min(c["w_bits"])
        a_choices = [a for a in c["a_bits"] if a >= 16 or w < 16]
        r = max(c["tome_r"])
        limits = merge_limits(self.supernet.num_tokens, [r] * depth)
        return JointConfig(depth=depth, embed_dim=min(c["embed_dim"]),
                           num_heads=min(c["num_heads"]), mlp_ratio=min(c["mlp_ratio"]),
                           tome_r=tuple(min(r, lim) for _, lim in limits) if r else 0,
                           w_bits=w, a_bits=min(a_choices)).canonical()

    # ---- validation ---------------------------------------------------------------------
    def validate(self, cfg: JointConfig, *, source: str | None = None) -> JointConfig:
        """Raise :class:`UserError` naming the field and value if ``cfg`` cannot run."""
        s = self.supernet
        src = source
        if not 1 <= cfg.depth <= s.depth:
            raise field_error(src, "depth", cfg.depth, f"must be in 1..{s.depth} (supernet depth)")
        if not 1 <= cfg.embed_dim <= s.embed_dim:
            raise field_error(src, "embed_dim", cfg.embed_dim,
                              f"must be in 1..{s.embed_dim} (supernet embed_dim)")
        for name in PER_LAYER_FIELDS:
            v = getattr(cfg, name)
            if isinstance(v, tuple) and len(v) != cfg.depth:
                raise field_error(src, name, list(v), f"needs one value per layer ({cfg.depth})")
        for i, h in enumerate(cfg.heads):
            if not 1 <= h <= s.num_heads:
                raise field_error(src, _at("num_heads", cfg, i), h,
                                  f"must be in 1..{s.num_heads} (supernet heads)")
        for i, (m, dim) in enumerate(zip(cfg.ratios, cfg.mlp_dims(), strict=True)):
            if not (m > 0 and 1 <= dim <= s.mlp_dim) or math.isnan(m):
                raise field_error(src, _at("mlp_ratio", cfg, i), m,
                                  f"gives MLP width {dim}, outside 1..{s.mlp_dim} (supernet)")
        for i, (r, (n, limit)) in enumerate(
            zip(cfg.merges, merge_limits(s.num_tokens, cfg.merges), strict=True)
        ):
            if r < 0 or r > limit:
                raise field_error(src, _at("tome_r", cfg, i), r,
                                  f"must be in 0..{limit} for a block entered by {n} tokens")
        for name in ("w_bits", "a_bits"):
            b = getattr(cfg, name)
            if b not in BITS:
                raise field_error(src, name, b, f"must be one of {list(BITS)}")
        if cfg.a_bits < 16 and cfg.w_bits >= 16:
            raise field_error(src, "a_bits", cfg.a_bits,
                              f"integer activations need integer weights (w_bits={cfg.w_bits})")
        return cfg

    # ---- sampling -----------------------------------------------------------------------
    def param_names(self) -> list[str]:
        """Optuna parameter names: scalars, then one per layer index for per-layer fields."""
        names = ["depth", "embed_dim"]
        for name in PER_LAYER_FIELDS:
            names += [f"{name}_{i}" for i in range(max(self.choices["depth"]))]
        return names + ["w_bits", "a_bits"]

    def param_choices(self, param: str) -> tuple[Any, ...]:
        base = param.rsplit("_", 1)[0] if param.split("_")[-1].isdigit() else param
        return self.choices[base]

    def config_from_params(self, params: Mapping[str, Any]) -> JointConfig:
        """Build a config from Optuna-style parameters (uses the first ``depth`` layers)."""
        depth = int(params["depth"])
        kw: dict[str, Any] = {"depth": depth, "embed_dim": int(params["embed_dim"]),
                              "w_bits": int(params["w_bits"]), "a_bits": int(params["a_bits"])}
        for name in PER_LAYER_FIELDS:
            kw[name] = tuple(params[f"{name}_{i}"] for i in range(depth))
        return JointConfig(**kw).canonical()

    def params_from_config(self, cfg: JointConfig) -> dict[str, Any]:
        """Inverse of :meth:`config_from_params`; unused layers repeat the last value."""
        out: dict[str, Any] = {"depth": cfg.depth, "embed_dim": cfg.embed_dim}
        for name in PER_LAYER_FIELDS:
            vals = cfg.layer(name)
            for i in range(max(self.choices["depth"])):
                out[f"{name}_{i}"] = vals[min(i, len(vals) - 1)]
        out["w_bits"], out["a_bits"] = cfg.w_bits, cfg.a_bits
        return out

    def sample(self, rng: np.random.Generator, *, axes: Sequence[str] = CONFIG_FIELDS
               ) -> JointConfig:
        """Draw a config uniformly from the choices; fields not in ``axes`` keep max_config's.

        Draws are repeated until the config validates (a merge that exceeds a block's limit or
        integer activations with float weights are redrawn).
        """
        base = self.params_from_config(self.max_config)
        for _ in range(1000):
            params = dict(base)
            for p in self.param_names():
                field_name = p.rsplit("_", 1)[0] if p.split("_")[-1].isdigit() else p
                if field_name in axes:
                    ch = self.param_choices(p)
                    params[p] = ch[int(rng.integers(len(ch)))]
            cfg = self.config_from_params(params)
            try:
                return self.validate(cfg)
            except UserError:
                continue
        raise RuntimeError("could not draw a valid config from the search space in 1000 tries")


def _at(name: str, cfg: JointConfig, i: int) -> str:
    return f"{name}[{i}]" if isinstance(getattr(cfg, name), tuple) else name
