"""One scratch folder per process, outside the study's output folder.

Evaluations export ONNX models into temporary folders. A process killed mid-evaluation (a
SIGKILL, a lost Ray node) cannot remove them, so they live in the system's temporary folder
under ``jointopt-scratch/<host>-<pid>-<start time>``, never among the user's results, and the
next jointopt process on the host removes the folders of processes that are gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

__all__ = ["scratch_dir", "scratch_root"]

_MINE: Path | None = None


def scratch_root() -> Path:
    return Path(tempfile.gettempdir()) / "jointopt-scratch"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks (guards against a reused pid); "?" if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _sweep(root: Path, host: str) -> None:
    """Remove this host's folders whose process no longer runs."""
    with contextlib.suppress(OSError):
        for d in root.iterdir():
            parts = d.name.rsplit("-", 2)
            if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
                continue  # another host's (a shared /tmp) or not ours
            if _start_time(int(parts[1])) != parts[2]:
                shutil.rmtree(d, ignore_errors=True)


def scratch_dir() -> Path:
    """This process's scratch folder (created on first use, removed at a normal exit)."""
    global _MINE
    if _MINE is not None and _MINE.is_dir():
        return _MINE
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    host, pid = socket.gethostname().replace("-", "_"), os.getpid()
    _sweep(root, host)
    _MINE = root / f"{host}-{pid}-{_start_time(pid)}"
    _MINE.mkdir(exist_ok=True)
    atexit.register(shutil.rmtree, _MINE, True)
    return _MINE
