"""Regression tests for issue 14's fixes, one behaviour each (the corpus in
``test_bad_inputs.py`` checks them end to end through the CLI)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from helpers import ROOT

from jointopt import Study
from jointopt.errors import ECHO_LIMIT, UserError, field_error, mask_secrets, short_repr
from jointopt.yamlio import MAX_DEPTH, MAX_NODES, parse_yaml


# ---- echoed input is bounded ---------------------------------------------------------------
def test_an_alias_bomb_is_echoed_without_being_expanded() -> None:
    # PyYAML itself builds this cheaply (9**9 shared leaves); repr() would expand all of it.
    levels = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
               for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    bomb = yaml.safe_load("\n".join(levels))["i"]
    err = field_error("study.yaml", "dataset", bomb, "must be a mapping")
    value = str(err).split("dataset=", 1)[1].rsplit(": must be", 1)[0]
    assert len(value) <= ECHO_LIMIT and value.endswith("...")
    assert len(short_repr("x" * 10**6)) == ECHO_LIMIT
    assert short_repr({"a": [1, 2]}) == "{'a': [1, 2]}"
    assert "\n" not in str(field_error("f", "k\nj", "two\nlines", "why\nnot"))


@pytest.mark.parametrize(("depth", "ok"), [(MAX_DEPTH, True), (MAX_DEPTH + 1, False)])
def test_yaml_nesting_limit(depth: int, ok: bool) -> None:
    text = "[" * depth + "]" * depth
    if ok:
        assert parse_yaml(text, "f.yaml") == eval_nested(depth)
    else:
        with pytest.raises(UserError, match=f"deeper than {MAX_DEPTH}"):
            parse_yaml(text, "f.yaml")


def eval_nested(depth: int) -> list:
    out: list = []
    for _ in range(depth - 1):
        out = [out]
    return out


@pytest.mark.parametrize(("items", "ok"), [(MAX_NODES - 1, True), (MAX_NODES, False)])
def test_yaml_node_limit_counts_the_sequence_and_its_items(items: int, ok: bool) -> None:
    text = "[" + ", ".join(["1"] * items) + "]"
    if ok:
        assert len(parse_yaml(text, "f.yaml")) == items
    else:
        with pytest.raises(UserError, match=f"more than {MAX_NODES}"):
            parse_yaml(text, "f.yaml")


def test_yaml_aliases_count_as_expanded_and_duplicate_keys_are_refused() -> None:
    # 1 + 100 * (1 + 100) nodes: a small text over the limit once the aliases are expanded
    text = "x: &x [" + ", ".join(["1"] * 100) + "]\ny: [" + ", ".join(["*x"] * 100) + "]"
    with pytest.raises(UserError, match="aliases counted as expanded"):
        parse_yaml(text, "f.yaml")
    with pytest.raises(UserError, match="key 'a' appears twice"):
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert parse_yaml("base: &b {x: 1}\nmore: {<<: *b, y: 2}\n", "f.yaml")["more"] == \
        {"x": 1, "y": 2}


# ---- credentials are masked in every form ----------------------------------------------------
@pytest.mark.parametrize("url", [
    "postgresql://u:pw@h:5432/db",
    "postgresql+psycopg2://u:pw@h/db?sslmode=require",
    "postgresql://h/db?user=u&password=pw",
    "postgresql://h/db?password=pw&user=u",
    "postgresql://u@h/db?sslpassword=pw",
    "mysql+pymysql://u:pw@h/db?passwd=pw",
    "postgresql://u:p@w@h/db",
    "error: could not parse 'postgresql://u:pw@h/db' from env:JOINTOPT_STORAGE",
])
def test_mask_secrets_hides_every_credential_form(url: str) -> None:
    masked = mask_secrets(url)
    assert "pw" not in masked and "***" in masked, masked


def test_env_storage_value_is_masked_wherever_it_is_echoed(tiny_study_path, monkeypatch,
                                                           capfd) -> None:
    from jointopt.cli import main

    data = yaml.safe_load(tiny_study_path.read_text())
    data["search"] = {"storage": "env:JOINTOPT_TEST_URL"}
    tiny_study_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("JOINTOPT_TEST_URL", "not a url, password=hunter2 user:hunter2@x")
    assert main(["pareto", str(tiny_study_path)]) == 2
    err = capfd.readouterr().err
    assert "hunter2" not in err and err.count("\n") == 1, err


# ---- storage URLs ----------------------------------------------------------------------------
def test_plain_postgresql_scheme_uses_the_installed_driver(tiny_study_path, monkeypatch) -> None:
    monkeypatch.setenv("JOINTOPT_TEST_URL", "postgresql://u@h:5432/db")
    data = yaml.safe_load(tiny_study_path.read_text())
    for storage, want in (("env:JOINTOPT_TEST_URL", "postgresql+psycopg2://u@h:5432/db"),
                          ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
                          ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db")):
        data["search"] = {"storage": storage}
        tiny_study_path.write_text(yaml.safe_dump(data))
        assert Study.from_yaml(tiny_study_path).storage_url == want


def test_connect_timeout_is_bounded_against_a_silent_server(tiny_study_path) -> None:
    """A server that accepts and never answers: libpq gives up after CONNECT_TIMEOUT."""
    from jointopt.controllers.storage import CONNECT_TIMEOUT, open_storage

    assert CONNECT_TIMEOUT <= 10
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    data = yaml.safe_load(tiny_study_path.read_text())
    data["search"] = {"storage": f"postgresql://u@127.0.0.1:{srv.getsockname()[1]}/db"}
    tiny_study_path.write_text(yaml.safe_dump(data))
    try:
        with pytest.raises(UserError, match="timeout expired"):
            open_storage(Study.from_yaml(tiny_study_path))
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        srv.close()


@pytest.mark.slow
def test_postgres_plain_url_opens_and_read_commands_create_no_tables(tiny_study_path,
                                                                       postgres, monkeypatch,
                                                                       capfd) -> None:
    import sqlalchemy

    from jointopt.cli import main
    from jointopt.controllers.storage import open_storage

    url = postgres.create_database("readonly_check")
    plain = url.replace("postgresql+psycopg2://", "postgresql://")
    monkeypatch.setenv("JOINTOPT_TEST_URL", plain)
    data = yaml.safe_load(tiny_study_path.read_text())
    data["search"] = {"storage": "env:JOINTOPT_TEST_URL"}
    tiny_study_path.write_text(yaml.safe_dump(data))
    for command in (["pareto"], ["report", "--out", str(tiny_study_path.parent / "r.html")]):
        assert main([*command, str(tiny_study_path)]) == 2
        assert "holds no study yet" in capfd.readouterr().err
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert sqlalchemy.inspect(conn).get_table_names() == []  # nothing created
    engine.dispose()
    open_storage(Study.from_yaml(tiny_study_path))  # the plain URL works for a search


# ---- scratch folders -------------------------------------------------------------------------
def test_a_killed_process_scratch_folder_is_swept(tmp_path, monkeypatch) -> None:
    from jointopt import scratch

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    code = ("import os, signal, tempfile; from jointopt.scratch import scratch_dir\n"
            "d = scratch_dir(); tempfile.mkdtemp(dir=d)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env)
    assert r.returncode == -signal.SIGKILL
    left = list((tmp_path / "jointopt-scratch").iterdir())
    assert len(left) == 1 and list(left[0].iterdir())  # the kill left its tmp folder
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_MINE", None)
    mine = scratch.scratch_dir()
    assert [p for p in (tmp_path / "jointopt-scratch").iterdir()] == [mine]  # swept
    assert mine.name.split("-")[1] == str(os.getpid())


def test_evaluation_writes_no_temporary_folder_into_the_output(trained_tiny) -> None:
    from jointopt import evaluate
    from jointopt.scratch import scratch_dir

    study = Study.from_yaml(trained_tiny)
    before = {p.name for p in study.output.iterdir()}
    evaluate(study, study.space.min_config)
    assert {p.name for p in study.output.iterdir()} == before
    assert not [p for p in study.output.iterdir() if p.name.startswith("tmp")]
    assert scratch_dir().is_dir()


# ---- baseline and seed configs are queued again ----------------------------------------------
def test_failed_baseline_and_seed_configs_are_queued_again(trained_tiny, tmp_path) -> None:
    from helpers import variant
    from optuna.trial import TrialState

    from jointopt.controllers.anchors import requeue_anchors
    from jointopt.controllers.storage import open_storage, open_study

    seed = {"depth": 1, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": 0,
            "w_bits": 8, "a_bits": 8}
    study = Study.from_yaml(variant(trained_tiny, tmp_path, "anchors", seed_configs=[seed]))
    ostudy = open_study(study, open_storage(study))
    for _ in range(2):  # the baseline and the seed config both fail (a worker without config)
        ostudy.tell(ostudy.ask(), state=TrialState.FAIL)
    assert requeue_anchors(ostudy, study) == ["baseline", "d1_e16_h1_m1_r0_w8a8"]
    assert requeue_anchors(ostudy, study) == []  # waiting now: not queued twice
    waiting = [t for t in ostudy.get_trials() if t.state == TrialState.WAITING]
    assert [t.user_attrs for t in waiting] == [{"baseline": True}, {"seed_config": True}]


def test_a_seed_config_pruned_as_a_repeat_is_not_queued_again(trained_tiny, tmp_path) -> None:
    from helpers import variant
    from optuna.trial import TrialState

    from jointopt.controllers.anchors import requeue_anchors
    from jointopt.controllers.storage import open_storage, open_study

    seed = {"depth": 1, "embed_dim": 16, "num_heads": 1, "mlp_ratio": 1.0, "tome_r": 0,
            "w_bits": 8, "a_bits": 8}
    study = Study.from_yaml(variant(trained_tiny, tmp_path, "repeat-seed", seed_configs=[seed]))
    ostudy = open_study(study, open_storage(study))
    ostudy.tell(ostudy.ask(), [0.5, 1.0, 1.0])  # the baseline
    seeded = ostudy.ask()
    assert seeded.user_attrs.get("seed_config") is True
    seeded.set_user_attr("repeat_of", 0)  # what the search does with a repeat
    ostudy.tell(seeded, state=TrialState.PRUNED)
    assert requeue_anchors(ostudy, study) == []
    assert not [t for t in ostudy.get_trials() if t.state == TrialState.WAITING]


# ---- packaging and deployment ----------------------------------------------------------------
def test_cluster_extra_is_ray_default_and_documented() -> None:
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"ray\[default\]", d) for d in meta["optional-dependencies"]["cluster"])
    readme = (ROOT / "README.md").read_text()
    assert "jointopt[cluster]" in readme
    assert '".[cluster]"' in (ROOT / "docker" / "Dockerfile").read_text()


def _preflight() -> tuple[str, list[str]]:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    svc = compose["services"]["preflight"]
    script = " ".join(svc["command"]).replace("$$", "$")  # Compose's literal dollar
    return script, list(compose["services"])


def _run_preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script, _ = _preflight()
    return subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=30)


def test_compose_refuses_placeholder_or_missing_secrets() -> None:
    example = {}
    for line in (ROOT / "docker" / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            example[k] = v
    r = _run_preflight(example)
    assert r.returncode == 1
    for key in ("POSTGRES_PASSWORD", "JOINTOPT_STORAGE", "RAY_AUTH_TOKEN"):
        assert key in r.stderr
    assert "POSTGRES_USER" not in r.stderr
    real = {**example, "POSTGRES_PASSWORD": "Zq8-long-random", "RAY_AUTH_TOKEN": "f00d" * 16,
            "JOINTOPT_STORAGE": "postgresql+psycopg2://jointopt:Zq8-long-random@postgres/jointopt"}
    assert _run_preflight(real).returncode == 0
    missing = {k: v for k, v in real.items() if k != "RAY_AUTH_TOKEN"}
    r = _run_preflight(missing)
    assert r.returncode == 1 and "RAY_AUTH_TOKEN" in r.stderr


def test_every_compose_service_waits_for_the_preflight() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]

    def waits(name: str, seen: frozenset[str] = frozenset()) -> bool:
        deps = services[name].get("depends_on") or {}
        if deps.get("preflight", {}).get("condition") == "service_completed_successfully":
            return True
        return any(waits(d, seen | {name}) for d in deps if d not in seen)

    assert [n for n in services if n != "preflight" and not waits(n)] == []


def test_a_study_complete_without_its_baseline_runs_the_baseline(trained_tiny, tmp_path,
                                                                 monkeypatch) -> None:
    """A study from before the fix: n_trials complete, the baseline failed and never queued
    again. The next search runs the baseline although n_trials are done; pareto then works."""
    from helpers import variant
    from optuna.trial import TrialState

    from jointopt.controllers import anchors, optuna_backend, run_search
    from jointopt.controllers.storage import open_storage, open_study
    from jointopt.report.front import pareto_summary

    study = Study.from_yaml(variant(trained_tiny, tmp_path, "old", n_trials=2))
    ostudy = open_study(study, open_storage(study))
    ostudy.tell(ostudy.ask(), state=TrialState.FAIL)  # the baseline failed on a worker
    with monkeypatch.context() as m:  # the old search: nothing queued the baseline again
        m.setattr(optuna_backend, "requeue_anchors", lambda o, s: [])
        run_search(study, progress=False)
    with pytest.raises(UserError, match="no evaluated baseline"):
        pareto_summary(study)
    assert anchors.pending_anchors(ostudy) == 0
    ostudy = run_search(study, progress=False)
    done = [t for t in ostudy.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3 and done[-1].user_attrs.get("baseline") is True
    assert pareto_summary(study)["baseline"]["number"] == done[-1].number
