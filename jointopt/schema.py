"""One schema for every user file: studies, search spaces and configs.

Each section of a file is a frozen dataclass. Its fields say, through their type annotations
and :func:`setting`, what the YAML may hold: the type (``int``, ``float``, ``str``, ``bool``,
``X | None``, ``tuple[X, ...]``, a nested section, or a per-layer ``int | tuple[int, ...]``),
the YAML key when it differs from the field name, paths relative to the file, allowed values
and bounds. :func:`parse` reads a mapping into such a dataclass in one way for every file.

Every error is one line that names the file, the key and the value (``UserError``): unknown
keys, missing keys, wrong types, NaN or infinite floats, values out of bounds. A section's
``check(source, prefix)`` method, when it has one, then checks what spans several fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from jointopt.errors import UserError, field_error, short_repr

__all__ = ["setting", "parse", "check_keys", "want", "Where", "yaml_keys"]

T = TypeVar("T")
_SCALARS: dict[Any, type] = {int: int, float: float, str: str, bool: bool}
_META = "jointopt.schema"


@dataclass(frozen=True)
class Where:
    """Where a value comes from: the file, the dotted key, and the folder paths resolve from."""

    source: str | Path | None
    key: str
    base: Path | None = None

    def error(self, value: Any, why: str) -> UserError:
        return field_error(self.source, self.key, value, why)

    def at(self, key: str) -> Where:
        return Where(self.source, f"{self.key}.{key}" if self.key else key, self.base)


@dataclass(frozen=True)
class _Rule:
    key: str | None = None
    path: bool = False
    choices: tuple[Any, ...] | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    why: str | None = None
    nonempty: bool = False
    pre: Callable[[Any, Where], Any] | None = None
    parse: Callable[[Any, Where], Any] | None = None
    yaml: bool = True
    rest: bool = False
    missing: str = "is required"


def setting(default: Any = dataclasses.MISSING, *, key: str | None = None, path: bool = False,
            choices: Iterable[Any] | None = None, gt: float | None = None,
            ge: float | None = None, lt: float | None = None, le: float | None = None,
            why: str | None = None, nonempty: bool = False,
            pre: Callable[[Any, Where], Any] | None = None,
            parse: Callable[[Any, Where], Any] | None = None, yaml: bool = True,
            rest: bool = False, missing: str = "is required",
            factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its schema rules.

    Args:
        key: the YAML key, when it differs from the field name.
        path: a path; relative ones resolve against the file's folder.
        choices: the allowed values (the error lists them).
        gt, ge, lt, le: bounds, checked after the value is coerced to the field's type.
        why: the error text for a value outside ``choices`` or the bounds.
        nonempty: a list must hold at least one value.
        pre: turns the raw YAML value into the form the type expects (e.g. a name into
            ``{name: ...}``) before it is checked.
        parse: parses the raw value itself (for values with their own syntax).
        yaml: False for a field set by the code, never read from the file.
        rest: a mapping field that collects the section's keys no other field names.
        missing: the error text when a field without a default is not given.
    """
    rule = _Rule(key=key, path=path, choices=tuple(choices) if choices is not None else None,
                 gt=gt, ge=ge, lt=lt, le=le, why=why, nonempty=nonempty, pre=pre, parse=parse,
                 yaml=yaml, rest=rest, missing=missing)
    meta = {_META: rule}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _rule(f: dataclasses.Field[Any]) -> _Rule:
    return f.metadata.get(_META, _Rule())


@cache
def _fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any, _Rule], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name], _rule(f)) for f in dataclasses.fields(cls) if f.init)


def yaml_keys(cls: type) -> tuple[str, ...]:
    """The keys a section of type ``cls`` accepts, in declaration order."""
    return tuple(r.key or f.name for f, _, r in _fields(cls) if r.yaml and not r.rest)


def parse(cls: type[T], data: Any, *, where: Where, **given: Any) -> T:
    """Read ``data`` (a mapping, or None for all defaults) into the dataclass ``cls``;
    ``given`` sets the fields the code decides (``setting(yaml=False)``)."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise where.error(data, "must be a mapping")
    section: type = cls
    fields = [(f, t, r) for f, t, r in _fields(section) if r.yaml]
    rest = next((f for f, _, r in fields if r.rest), None)
    keys = yaml_keys(section)
    if rest is None:
        check_keys(data, keys, source=where.source, prefix=where.key)
    kw: dict[str, Any] = {}
    for f, typ, rule in fields:
        if rule.rest:
            continue
        name = rule.key or f.name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise where.at(name).error(None, rule.missing)
            continue
        kw[f.name] = _value(data[name], typ, rule, where.at(name))
    if rest is not None:
        kw[rest.name] = {k: v for k, v in data.items() if k not in keys}
    obj = cls(**kw, **given)
    check = getattr(obj, "check", None)
    if check is not None:
        check(where.source, where.key)
    return obj


def _value(value: Any, typ: Any, rule: _Rule, where: Where) -> Any:
    if rule.pre is not None:
        value = rule.pre(value, where)
    if rule.parse is not None:
        return rule.parse(value, where)
    if value is None and _optional(typ):
        return None
    if rule.path:
        p = Path(want(value, str, where.source, where.key)).expanduser()
        return p if p.is_absolute() or where.base is None else where.base / p
    out = _typed(value, _strip_none(typ), rule, where)
    _bounds(out, rule, where)
    return out


def _optional(typ: Any) -> bool:
    return isinstance(typ, types.UnionType) and type(None) in typing.get_args(typ) \
        or typing.get_origin(typ) is typing.Union and type(None) in typing.get_args(typ)


def _strip_none(typ: Any) -> Any:
    if not _optional(typ):
        return typ
    args = tuple(a for a in typing.get_args(typ) if a is not type(None))
    return args[0] if len(args) == 1 else typing.Union[args]  # noqa: UP007


def _typed(value: Any, typ: Any, rule: _Rule, where: Where) -> Any:
    if typ is Any:
        return value
    if typ in _SCALARS:
        return want(value, typ, where.source, where.key)
    if dataclasses.is_dataclass(typ) and isinstance(typ, type):
        return parse(typ, value, where=where)
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is tuple:
        if not isinstance(value, list | tuple) or (rule.nonempty and not value):
            raise where.error(value, "must be a non-empty list" if rule.nonempty
                              else "must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(v, args[0], _Rule(), where) for v in value)
        if len(value) != len(args):
            raise where.error(value, f"must be a list of {len(args)} values")
        return tuple(_typed(v, a, _Rule(), where) for v, a in zip(value, args, strict=True))
    if origin in (Mapping, dict) or typ in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise where.error(value, "must be a mapping")
        return dict(value)
    if isinstance(typ, types.UnionType) or origin is typing.Union:
        # A per-layer field: one value for every layer, or a list of one value per layer.
        scalar = next(a for a in args if a in _SCALARS)
        if isinstance(value, list | tuple):
            if not value:
                raise where.error(value, "must not be an empty list")
            return tuple(want(v, scalar, where.source, where.key) for v in value)
        return want(value, scalar, where.source, where.key)
    raise TypeError(f"jointopt.schema: no rule for field type {typ!r} ({where.key})")


def _bounds(value: Any, rule: _Rule, where: Where) -> None:
    """Check ``value`` (each element of a list) against the rule's choices and bounds."""
    for v in value if isinstance(value, tuple) else (value,):
        if rule.choices is not None and v not in rule.choices:
            names = [str(c) for c in rule.choices]
            listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
            raise where.error(v, rule.why or f"must be {listed}")
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for text, bound in ((">", rule.gt), (">=", rule.ge), ("<", rule.lt), ("<=", rule.le)):
            if bound is not None and not _holds(v, text, bound):
                raise where.error(v, rule.why or f"must be {text} {bound:g}")


def _holds(v: float, op: str, bound: float) -> bool:
    return {">": v > bound, ">=": v >= bound, "<": v < bound, "<=": v <= bound}[op]


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], *, source: Any,
               prefix: str) -> None:
    """Reject keys outside ``allowed``, naming the first unknown one."""
    if not isinstance(data, Mapping):
        raise field_error(source, prefix or "(top level)", data, "must be a mapping")
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            name = f"{prefix}.{key}" if prefix else str(key)
            raise UserError(f"{source}: unknown key {short_repr(name)} "
                            f"(allowed: {', '.join(allowed)})")


def want(value: Any, typ: type, source: Any, key: str) -> Any:
    """Coerce ``value`` to int/float/str/bool, or raise an error naming key and value.

    Floats must be finite: NaN passes every ``<`` and ``>`` check and would run a whole search.
    """
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                f = float(value)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                raise field_error(source, key, value, "must be a finite number")
            return f
    elif typ is str:
        if isinstance(value, str):
            return value
    raise field_error(source, key, value, f"must be {typ.__name__}")
