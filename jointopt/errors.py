"""User-facing errors.

A :class:`UserError` is a mistake in what the user gave us (a file, a field, a value). The CLI
prints its message as one line and exits with status 2; it never shows a traceback for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["UserError", "StorageLost", "field_error"]


class UserError(ValueError):
    """Bad user input. The message is one line naming the file, the field and the value."""

    exit_code = 2


class StorageLost(RuntimeError):
    """The study storage went away mid-run and did not come back within the retry window.

    Every trial that finished before is in the storage; running the search again resumes it.
    """

    exit_code = 3


def field_error(source: str | Path | None, field: str, value: Any, why: str) -> UserError:
    """Build a one-line error ``source: field=value: why``."""
    where = f"{source}: " if source else ""
    text = f"{where}{field}={value!r}: {why}"
    return UserError(" ".join(text.split()))
