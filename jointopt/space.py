"""The joint configuration and the search space it is drawn from.

A :class:`JointConfig` names one subnet of the supernet together with its token-merging and
bit-width settings. A :class:`SearchSpace` holds the supernet's shape (what can run) and the
choices a search draws from, validates configs and turns them into Optuna parameters.

Search parameters (define-by-run, :meth:`SearchSpace.suggest`): ``depth``, ``embed_dim``, then
``num_heads_{i}``, ``mlp_ratio_{i}`` and ``tome_r_{i}`` for the ``depth`` layers that exist
only, then one categorical ``precision`` over the valid (w, a) pairs of the space (``w32a32``,
``w16a16``, ``w8a8``, ``w4a16``, ...). ``tome_r_{i}`` offers only the merges that block ``i``
can always do (even after the most merging in the blocks before it), so a search cannot ask for
a config the space rejects.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jointopt.errors import UserError, field_error
from jointopt.precision import BITS, invalid_reason, parse_precision, precision_name, valid_pairs
from jointopt.schema import Where, parse, setting
from jointopt.yamlio import load_yaml

__all__ = ["JointConfig", "SearchSpace", "SupernetShape", "BITS", "PER_LAYER_FIELDS",
           "SPACE_FIELDS"]

PER_LAYER_FIELDS: tuple[str, ...] = ("num_heads", "mlp_ratio", "tome_r")
SCALAR_FIELDS: tuple[str, ...] = ("depth", "embed_dim", "w_bits", "a_bits")
CONFIG_FIELDS: tuple[str, ...] = (
    "depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r", "w_bits", "a_bits",
)
#: The axes of a search space: the architecture, merging, and one ``precision`` axis.
SPACE_FIELDS: tuple[str, ...] = (
    "depth", "embed_dim", "num_heads", "mlp_ratio", "tome_r", "precision",
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
        """Parse a config, rejecting unknown or missing keys with an error naming them.

        ``precision: w8a8`` may stand for ``w_bits: 8, a_bits: 8``."""
        if not isinstance(data, Mapping):
            raise field_error(source, "config", data, "must be a mapping of config fields")
        data = dict(data)
        if "precision" in data:
            if "w_bits" in data or "a_bits" in data:
                raise field_error(source, "precision", data["precision"],
                                  "give either precision or w_bits/a_bits, not both")
            try:
                data["w_bits"], data["a_bits"] = parse_precision(data.pop("precision"))
            except ValueError as e:
                raise field_error(source, "precision", data.get("precision"), str(e)) from None
        return parse(cls, data, where=Where(source, ""))

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

    @property
    def precision(self) -> str:
        """``w{w_bits}a{a_bits}``, the search's precision parameter."""
        return precision_name(self.w_bits, self.a_bits)


@dataclass(frozen=True)
class SupernetShape:
    """The largest network a supernet holds: every subnet is a slice of it."""

    img_size: int = setting(64, gt=0, why="must be positive")
    patch_size: int = setting(8, gt=0, why="must be positive")
    depth: int = setting(6, gt=0, why="must be positive")
    embed_dim: int = setting(192, gt=0, why="must be positive")
    num_heads: int = setting(4, gt=0, why="must be positive")
    head_dim: int = setting(32, gt=0, why="must be positive")
    mlp_ratio: float = setting(4.0, gt=0, why="must be positive")
    #: What the head reads: "avg" (size-weighted mean of the patch tokens), "max" (channel-wise
    #: max over patch tokens) or "cls".
    pool: str = setting("avg", choices=("avg", "max", "cls"))
    #: How images become tokens: "patch" (patchify: one Linear over each patch) or "conv"
    #: (Xiao et al., NeurIPS 2021: log2(patch_size) 3x3 stride-2 convolutions with
    #: ``stem_width``, 2x, 4x ... channels, then a 1x1 projection), shared by every subnet.
    stem: str = setting("patch", choices=("patch", "conv"))
    stem_width: int = setting(16, gt=0, why="must be positive")

    @property
    def num_tokens(self) -> int:
        """Tokens entering the first block: patches plus the cls token."""
        return (self.img_size // self.patch_size) ** 2 + 1

    @property
    def mlp_dim(self) -> int:
        return int(round(self.mlp_ratio * self.embed_dim))

    def stem_convs(self, in_chans: int) -> list[tuple[int, int, int]]:
        """The conv stem's 3x3 stride-2 convolutions as ``(in channels, out channels, output
        side)`` (none for the patch stem); its 1x1 projection is the ``patch_embed`` linear."""
        if self.stem != "conv":
            return []
        return conv_stem_layout(in_chans, self.img_size, self.patch_size, self.stem_width)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None,
                  prefix: str = "supernet") -> SupernetShape:
        return parse(cls, data, where=Where(source, prefix))

    def check(self, source: str | Path | None, prefix: str) -> None:
        if self.img_size % self.patch_size:
            raise field_error(source, f"{prefix}.patch_size", self.patch_size,
                              f"must divide img_size {self.img_size}")
        p = self.patch_size
        if self.stem == "conv" and (p < 2 or p & (p - 1)):
            raise field_error(source, f"{prefix}.patch_size", p,
                              "must be a power of 2 (2, 4, 8, ...) with stem: conv")


def conv_stem_layout(in_chans: int, img_size: int, patch_size: int, width: int
                     ) -> list[tuple[int, int, int]]:
    """log2(patch_size) 3x3 stride-2 convolutions (padding 1) with ``width``, 2x, 4x ...
    channels, as ``(in channels, out channels, output side)``: the one description of a conv
    stem's geometry, which the module (``ConvStem.build``) and the costs both read."""
    out, size, c = [], img_size, in_chans
    for i in range(patch_size.bit_length() - 1):
        size = (size + 2 - 3) // 2 + 1
        out.append((c, width * 2**i, size))
        c = width * 2**i
    return out


_LIST = "must be a non-empty list"


@dataclass(frozen=True)
class Choices:
    """A search space file's ``choices:`` section: the values each axis draws from.

    ``precision`` names (w, a) pairs (``w8a8``); the older ``w_bits``/``a_bits`` lists stand
    for their valid pairs.
    """

    depth: tuple[int, ...] = setting(nonempty=True, missing=_LIST)
    embed_dim: tuple[int, ...] = setting(nonempty=True, missing=_LIST)
    num_heads: tuple[int, ...] = setting(nonempty=True, missing=_LIST)
    mlp_ratio: tuple[float, ...] = setting(nonempty=True, missing=_LIST)
    tome_r: tuple[int, ...] = setting((0,), nonempty=True)
    precision: tuple[str, ...] | None = setting(
        None, nonempty=True, why="must be a non-empty list such as [w32a32, w8a8]")
    w_bits: tuple[int, ...] | None = setting(None, nonempty=True, choices=BITS,
                                             why=f"must be one of {list(BITS)}")
    a_bits: tuple[int, ...] | None = setting(None, nonempty=True, choices=BITS,
                                             why=f"must be one of {list(BITS)}")

    def check(self, source: str | Path | None, prefix: str) -> None:
        if self.precision is not None and (self.w_bits is not None or self.a_bits is not None):
            raise field_error(source, f"{prefix}.precision", list(self.precision),
                              "give either precision or w_bits/a_bits lists, not both")
        for p in self.precision or ():
            try:
                parse_precision(p)
            except ValueError as e:
                raise field_error(source, f"{prefix}.precision", p, str(e)) from None
        if self.precision is None:
            w, a = self.w_bits or (32,), self.a_bits or (32,)
            if not valid_pairs(w, a):
                raise field_error(source, f"{prefix}.w_bits/a_bits", [list(w), list(a)],
                                  "hold no valid precision pair")

    def axes(self) -> dict[str, tuple[Any, ...]]:
        """The values of each axis of :data:`SPACE_FIELDS`, sorted and without repeats."""
        out: dict[str, tuple[Any, ...]] = {
            name: tuple(sorted(set(getattr(self, name)))) for name in SPACE_FIELDS[:-1]}
        if self.precision is not None:
            out["precision"] = tuple(dict.fromkeys(
                precision_name(*parse_precision(p)) for p in self.precision))
        else:
            pairs = valid_pairs(self.w_bits or (32,), self.a_bits or (32,))
            out["precision"] = tuple(precision_name(w, a) for w, a in pairs)
        return out


@dataclass(frozen=True, kw_only=True)
class _SpaceFile:
    supernet: SupernetShape = setting(factory=SupernetShape)
    choices: Choices = setting(missing="must be a mapping of field: [values]")


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
        choices: for each axis of :data:`SPACE_FIELDS`, the values a search draws from
            (``precision`` holds names such as ``w8a8``). Per-layer fields get one Optuna
            parameter per existing layer (``num_heads_0``, ``num_heads_1``, ...).
    """

    supernet: SupernetShape
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self) -> None:
        choices = dict(self.choices)
        if "precision" not in choices:  # built from bit-width lists (the supernet's own space)
            pairs = valid_pairs(tuple(choices.pop("w_bits", (32,))),
                                tuple(choices.pop("a_bits", (32,))))
            choices["precision"] = tuple(precision_name(w, a) for w, a in pairs)
        choices.pop("w_bits", None)
        choices.pop("a_bits", None)
        object.__setattr__(self, "choices", choices)
        for name in SPACE_FIELDS:
            if name not in self.choices or not self.choices[name]:
                raise field_error(self.source, f"choices.{name}", None, "needs at least one value")
        for p in self.choices["precision"]:
            try:
                parse_precision(p)
            except ValueError as e:
                raise field_error(self.source, "choices.precision", p, str(e)) from None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        data = load_yaml(path)
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> SearchSpace:
        raw = parse(_SpaceFile, data, where=Where(source, ""))
        space = cls(supernet=raw.supernet, choices=raw.choices.axes(), source=source)
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
        """Smallest architecture, most merging and fewest bits that the choices allow."""
        c = self.choices
        depth = min(c["depth"])
        w, a = min((parse_precision(p) for p in c["precision"]), key=lambda p: (p[0] + p[1], p))
        merges = tuple(max(self.merge_choices(i)) for i in range(depth))
        return JointConfig(depth=depth, embed_dim=min(c["embed_dim"]),
                           num_heads=min(c["num_heads"]), mlp_ratio=min(c["mlp_ratio"]),
                           tome_r=merges, w_bits=w, a_bits=a).canonical()

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The (w_bits, a_bits) pairs of the precision axis."""
        return [parse_precision(p) for p in self.choices["precision"]]

    def merge_choices(self, layer: int) -> tuple[int, ...]:
        """The ``tome_r`` choices block ``layer`` can always do, however much the blocks before
        it merged (each merges at most (tokens entering - 1) // 2)."""
        most = max(self.choices["tome_r"])
        n = self.supernet.num_tokens
        for _ in range(layer):
            n -= min(most, (n - 1) // 2)
        limit = (n - 1) // 2
        return tuple(r for r in self.choices["tome_r"] if r <= limit) or (0,)

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
        why = invalid_reason(cfg.w_bits, cfg.a_bits)
        if why is not None:
            raise field_error(src, "a_bits", cfg.a_bits, f"{why} (w_bits={cfg.w_bits})")
        return cfg

    # ---- search parameters --------------------------------------------------------------
    def param_names(self, depth: int | None = None) -> list[str]:
        """Optuna parameter names of a config of ``depth`` layers (default: the deepest)."""
        depth = max(self.choices["depth"]) if depth is None else depth
        names = ["depth", "embed_dim"]
        for i in range(depth):
            names += [f"{name}_{i}" for name in PER_LAYER_FIELDS]
        return names + ["precision"]

    def param_choices(self, param: str) -> tuple[Any, ...]:
        """The choices of one parameter (``tome_r_3`` offers block 3's merges)."""
        base, _, idx = param.rpartition("_")
        if idx.isdigit() and base in PER_LAYER_FIELDS:
            return self.merge_choices(int(idx)) if base == "tome_r" else self.choices[base]
        return self.choices[param]

    def suggest(self, trial: Any) -> JointConfig:
        """Draw a config through an Optuna trial, define-by-run: per-layer parameters exist only
        for the ``depth`` layers drawn, and ``precision`` is one categorical."""
        depth = trial.suggest_categorical("depth", list(self.choices["depth"]))
        params: dict[str, Any] = {"depth": depth, "embed_dim": trial.suggest_categorical(
            "embed_dim", list(self.choices["embed_dim"]))}
        for name in self.param_names(depth)[2:]:
            params[name] = trial.suggest_categorical(name, list(self.param_choices(name)))
        return self.config_from_params(params)

    def config_from_params(self, params: Mapping[str, Any]) -> JointConfig:
        """Build a config from Optuna-style parameters (uses the first ``depth`` layers)."""
        depth = int(params["depth"])
        w, a = parse_precision(params["precision"])
        kw: dict[str, Any] = {"depth": depth, "embed_dim": int(params["embed_dim"]),
                              "w_bits": w, "a_bits": a}
        for name in PER_LAYER_FIELDS:
            kw[name] = tuple(params[f"{name}_{i}"] for i in range(depth))
        return JointConfig(**kw).canonical()

    def params_from_config(self, cfg: JointConfig) -> dict[str, Any]:
        """Inverse of :meth:`config_from_params`: the parameters of the layers that exist."""
        out: dict[str, Any] = {"depth": cfg.depth, "embed_dim": cfg.embed_dim}
        for i in range(cfg.depth):
            for name in PER_LAYER_FIELDS:
                out[f"{name}_{i}"] = cfg.layer(name)[i]
        out["precision"] = cfg.precision
        return out

    def size(self) -> int:
        """How many distinct configs the space holds (exactly; a Python int)."""
        c = self.choices
        total = 0
        for depth in c["depth"]:
            per_layer = 1
            for i in range(depth):
                per_layer *= len(c["num_heads"]) * len(c["mlp_ratio"]) * len(self.merge_choices(i))
            total += per_layer
        return total * len(c["embed_dim"]) * len(c["precision"])

    def sample(self, rng: np.random.Generator, *, axes: Sequence[str] = SPACE_FIELDS
               ) -> JointConfig:
        """Draw a config uniformly from the choices; axes not in ``axes`` keep max_config's.

        ``axes`` names fields of :data:`SPACE_FIELDS` (``w_bits``/``a_bits`` mean ``precision``).
        """
        wanted = {("precision" if a in ("w_bits", "a_bits") else a) for a in axes}
        base = self.max_config
        depth = int(self.choices["depth"][rng.integers(len(self.choices["depth"]))]) \
            if "depth" in wanted else base.depth
        params: dict[str, Any] = {"depth": depth}

        def draw(name: str, param: str, default: Any) -> Any:
            if name not in wanted:
                return default
            ch = self.param_choices(param)
            return ch[int(rng.integers(len(ch)))]

        params["embed_dim"] = draw("embed_dim", "embed_dim", base.embed_dim)
        for i in range(depth):
            for name in PER_LAYER_FIELDS:
                params[f"{name}_{i}"] = draw(name, f"{name}_{i}", base.layer(name)[0])
        params["precision"] = draw("precision", "precision", base.precision)
        return self.validate(self.config_from_params(params))


def _at(name: str, cfg: JointConfig, i: int) -> str:
    return f"{name}[{i}]" if isinstance(getattr(cfg, name), tuple) else name
