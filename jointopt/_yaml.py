"""Safe YAML loading and small checks that name the file, key and value on failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from jointopt.errors import UserError, field_error

__all__ = ["load_yaml", "check_keys", "want"]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], *, source: Any,
               prefix: str) -> None:
    """Reject keys outside ``allowed``, naming the first unknown one."""
    if not isinstance(data, Mapping):
        raise field_error(source, prefix or "(top level)", data, "must be a mapping")
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            name = f"{prefix}.{key}" if prefix else str(key)
            raise UserError(f"{source}: unknown key {name!r} (allowed: {', '.join(allowed)})")


def want(value: Any, typ: type, source: Any, key: str) -> Any:
    """Coerce ``value`` to int/float/str/bool, or raise an error naming key and value."""
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
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    raise field_error(source, key, value, f"must be {typ.__name__}")
