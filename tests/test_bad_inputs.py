"""The bad-input corpus (``helpers/corpus.py``) against what the README promises.

Every case runs ``jointopt.cli.main(argv)`` in this process and must give exit status 2,
exactly one line on stderr naming the file, the key and the value, and write nothing: the
working folder, the study file's folder and its parent, the output folder and the storage are
snapshotted before and after. Three cases also run as real subprocesses (``test_subprocess_*``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli, run_main
from helpers.corpus import CASES, SECRET, Ctx, close_sockets, snapshot


def test_corpus_is_large_and_covers_every_category() -> None:
    names = [n for n, _, _ in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 60, len(CASES)
    for prefix in ("unknown-", "type-", "nan-", "malformed", "empty", "list-", "python-tag",
                   "alias-bomb", "dataset-missing", "dataset-empty", "corrupt-image",
                   "mixed-modes", "truncated-16bit", "unicode-class", "symlink-loop",
                   "decompression-bomb", "ckpt-", "pg-unreachable", "wrong-scheme",
                   "password-", "env-", "dashboard-busy-port", "name-"):
        assert any(n.startswith(prefix) for n in names), prefix


@pytest.mark.parametrize(("name", "setup", "expect"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, setup, expect, tmp_path,
                                                         monkeypatch, capfd) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("JOINTOPT_CORPUS_UNSET", raising=False)
    c = Ctx(tmp_path)
    try:
        argv = setup(c)
        for k, v in c.env.items():
            monkeypatch.setenv(k, v)
        roots = [cwd, c.dir, c.dir.parent, c.out, tmp_path / "elsewhere"]
        before = snapshot(*roots)
        rc, out, err = run_main(capfd, *argv)
        after = snapshot(*roots)
    finally:
        close_sockets()
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    line = lines[0]
    for e in expect:
        assert e.replace("{study}", str(c.path)) in line, (e, line)
    assert SECRET not in err + out
    assert len(line) < 700, line
    assert before == after, sorted(set(after.items()) ^ set(before.items()))


# ---- the same promise from a real process ----------------------------------------------------
def _limit_memory() -> None:  # an expanding alias bomb passed 3 GB; torch maps 3.6 GB at import
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def _subprocess_case(tmp_path: Path, name: str) -> None:
    setup, expect = next((s, e) for n, s, e in CASES if n == name)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    c = Ctx(tmp_path)
    try:
        argv = setup(c)
        roots = [cwd, c.dir, c.dir.parent, c.out]
        before = snapshot(*roots)
        r = run_cli(*argv, cwd=cwd, timeout=120, preexec_fn=_limit_memory)
        after = snapshot(*roots)
    finally:
        close_sockets()
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    for e in expect:
        assert e.replace("{study}", str(c.path)) in lines[0], (e, lines[0])
    assert before == after


def test_subprocess_alias_bomb_in_config(tmp_path) -> None:
    _subprocess_case(tmp_path, "alias-bomb-config")


def test_subprocess_pareto_never_searched_creates_no_database(tmp_path) -> None:
    _subprocess_case(tmp_path, "never-searched-pareto")
    assert not (tmp_path / "parent" / "study" / "out").exists()


def test_subprocess_dashboard_busy_port(tmp_path) -> None:
    _subprocess_case(tmp_path, "dashboard-busy-port")
