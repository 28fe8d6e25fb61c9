"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a file, a field, a value). The CLI
prints its message as one line and exits with status 2; it never shows a traceback for one.

Whatever a message echoes of the user's input is bounded (:func:`short_repr`) and stripped of
credentials (:func:`mask_secrets`): a YAML alias bomb is cheap to load but about 10**9 elements
long once ``repr`` expands it, and a storage URL may carry a password in several places.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["UserError", "StorageLost", "SearchFailed", "field_error", "short_repr",
           "mask_secrets", "one_line", "clip", "ECHO_LIMIT"]

#: Most characters of a user's value that a message echoes.
ECHO_LIMIT = 120


class UserError(ValueError):
    """Bad user input. The message is one line naming the file, the field and the value."""

    exit_code = 2


class StorageLost(RuntimeError):
    """The study storage went away mid-run and did not come back within the retry window.

    Every trial that finished before is in the storage; running the search again resumes it.
    """

    exit_code = 3


class SearchFailed(RuntimeError):
    """A search pass in which no trial completed (every one failed); the message says why."""

    exit_code = 1


def _walk(value: Any, out: list[str], budget: int, depth: int) -> int:
    """Append a repr-like rendering of ``value`` to ``out``, stopping once ``budget`` characters
    are used; returns the budget left. Containers are walked lazily, so a structure that shares
    one list 10**9 times (YAML aliases) costs no more than ``budget`` steps."""
    if budget <= 0:
        return 0
    if depth > 8:
        out.append("...")
        return budget - 3
    if isinstance(value, dict):
        pairs: Any = value.items()
        open_, close = "{", "}"
    elif isinstance(value, list | tuple | set | frozenset):
        pairs = value
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")") \
            if isinstance(value, tuple) else ("{", "}")
    else:
        try:
            text = repr(value[: budget + 2] if isinstance(value, str | bytes) else value)
        except Exception:  # noqa: BLE001  (e.g. int too large to print)
            text = f"<{type(value).__name__}>"
        out.append(text[:budget])
        return budget - min(len(text), budget)
    out.append(open_)
    budget -= 1
    for i, item in enumerate(pairs):
        if budget <= 0:
            break
        if i:
            out.append(", ")
            budget -= 2
        if isinstance(value, dict):
            k, v = item
            budget = _walk(k, out, budget, depth + 1)
            out.append(": ")
            budget = _walk(v, out, budget - 2, depth + 1)
        else:
            budget = _walk(item, out, budget, depth + 1)
    out.append(close)
    return budget - 1


def short_repr(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (ending in ``...`` when cut), on one
    line, with credentials masked; never expands more of ``value`` than it prints."""
    out: list[str] = []
    _walk(value, out, limit + 1, 0)
    text = mask_secrets(one_line("".join(out)))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# user:password@ in any URL; password= (and other secret-looking keys) in a query string.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s'\"]*)"
                       r":(?P<pw>[^\s'\"/]*)@")
_QUERY_SECRET = re.compile(r"(?P<key>[?&;](?:[A-Za-z_]*(?:pass|secret|token|pwd|key)"
                           r"[A-Za-z_]*))=(?P<value>[^&;#\s'\"]*)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with every credential a SQLAlchemy URL can carry replaced by ``***``:
    ``scheme://user:password@host`` and ``?password=...`` (also ``sslpassword``, ``token``,
    ``secret``, ``key`` query parameters)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}=***", text)


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` on one line, credentials masked, cut to ``limit`` characters."""
    text = mask_secrets(one_line(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_error(source: str | Path | None, field: str, value: Any, why: str) -> UserError:
    """Build a one-line error ``source: field=value: why`` (the value bounded and masked)."""
    where = f"{source}: " if source else ""
    field = one_line(field)
    field = field if len(field) <= 200 else field[:197] + "..."
    text = f"{where}{field}={short_repr(value)}: {why}"
    return UserError(mask_secrets(one_line(text)))
