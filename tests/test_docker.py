"""docker/: the worker image, the compose cluster and the cluster study agree with each other.

Static checks on the files (no Docker engine needed); where a Docker Compose v2 CLI is installed,
``compose config`` validates the file as Compose itself reads it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from helpers import ROOT

DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
CLUSTER_STUDY = ROOT / "studies" / "cluster.yaml"

SERVICES = ("postgres", "ray-head", "ray-worker", "optuna-dashboard", "search")
RAY_SERVICES = ("ray-head", "ray-worker", "search")
SECRET_KEYS = ("POSTGRES_PASSWORD", "POSTGRES_USER", "JOINTOPT_STORAGE", "RAY_AUTH_TOKEN")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, ${VAR+alt}, $VAR
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def _refs(text: str) -> list[tuple[str, str | None]]:
    """(name, operator) of every variable reference; ``$$`` is Compose's literal dollar."""
    text = text.replace("$$", "")
    return [(m["name"] or m["bare"], m["op"]) for m in _VAR.finditer(text)]


def _resolve(text: str, env: dict[str, str] | None = None) -> str:
    """Interpolate like Compose: unset variables take their default, ``:?`` fails."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"] or m["bare"], m["op"], m["arg"] or ""
        value = env.get(name)
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?"):
            missing = not value if op == ":?" else value is None
            if missing:
                raise KeyError(f"{name} is required: {arg}")
            return value or ""
        if op == ":+":
            return arg if value else ""
        if op == "+":
            return "" if value is None else arg
        return value or ""

    parts = text.split("$$")
    return "$".join(_VAR.sub(sub, p) for p in parts)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{ENV_EXAMPLE.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


def _environment(svc: dict[str, Any]) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return {k: (v if sep else None)
                for k, sep, v in (str(e).partition("=") for e in env)}
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _command(svc: dict[str, Any]) -> str:
    cmd = svc.get("command") or ""
    return " ".join(" ".join(str(c) for c in cmd).split()) if isinstance(cmd, list) \
        else " ".join(str(cmd).split())


def _host_ip(entry: Any, env: dict[str, str] | None = None) -> str | None:
    """The host address a ``ports`` entry publishes on (None: all interfaces)."""
    if isinstance(entry, dict):  # long syntax; without host_ip it binds every interface
        ip = entry.get("host_ip")
        return None if ip is None else _resolve(str(ip), env)
    parts = _resolve(str(entry), env).split(":")
    return parts[0] if len(parts) == 3 else None


def test_the_five_services_exist(compose: dict[str, Any]) -> None:
    missing = [s for s in SERVICES if s not in compose["services"]]
    assert not missing, f"compose.yaml lacks services {missing}"


def test_published_ports_bind_loopback_unless_jointopt_bind(compose: dict[str, Any]) -> None:
    published = []
    for name, svc in compose["services"].items():
        assert svc.get("network_mode") != "host", f"{name}: network_mode host skips port binding"
        for entry in _as_list(svc.get("ports")):
            published.append(name)
            assert _host_ip(entry) == "127.0.0.1", f"{name}: {entry!r} binds beyond loopback"
            assert _host_ip(entry, {"JOINTOPT_BIND": "0.0.0.0"}) == "0.0.0.0", \
                f"{name}: {entry!r} is not overridable through JOINTOPT_BIND"
    # The dashboards must be reachable from the host at all.
    assert {"ray-head", "optuna-dashboard"} <= set(published)
    head = " ".join(str(p) for p in compose["services"]["ray-head"]["ports"])
    assert head.endswith(":8265"), "ray-head must publish the dashboard/job API (8265)"
    assert "--dashboard-host=0.0.0.0" in _command(compose["services"]["ray-head"]), \
        "inside its container the Ray dashboard must listen on 0.0.0.0 to be published"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {}
    for name, svc in compose["services"].items():
        for v in _as_list(svc.get("volumes")):
            if isinstance(v, dict):
                src = v.get("source") if v.get("type", "volume") == "volume" else None
            else:
                src = str(v).split(":", 1)[0] if ":" in str(v) else None
            if src and not src.startswith((".", "/", "~", "$")):
                used[src] = name
    assert used, "no named volume: the database would not persist"
    undeclared = {v: s for v, s in used.items() if v not in declared}
    assert not undeclared, f"volumes used but not declared at top level: {undeclared}"
    pg = [str(v) for v in compose["services"]["postgres"].get("volumes", [])]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg), "postgres data not on a volume"


def test_depends_on_names_services_and_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for dep, cond in deps.items():
            assert dep in services, f"{name}: depends_on unknown service {dep!r}"
            if (cond or {}).get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), \
                    f"{name} waits for {dep} to be healthy but {dep} has no healthcheck"
    search = services["search"]["depends_on"]
    assert isinstance(search, dict), "search: depends_on needs conditions"
    assert search.get("postgres", {}).get("condition") == "service_healthy"
    assert "ray-head" in search


def test_credentials_come_from_the_env_file(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert not re.search(r"postgres(ql)?(\+\w+)?://", text), "a database URL is written in YAML"
    for name in SERVICES:
        svc = compose["services"][name]
        env = _environment(svc)
        literal = [k for k in env if k in SECRET_KEYS or k.endswith(("_PASSWORD", "_TOKEN"))]
        assert not literal, f"{name}: {literal} set in compose.yaml; they belong in the env file"
        files = [str(f["path"] if isinstance(f, dict) else f)
                 for f in _as_list(svc.get("env_file"))]
        assert files or svc.get("secrets"), f"{name}: neither env_file nor secrets"
        for f in files:
            assert _resolve(f) == ".env", f"{name}: env_file {f!r} is not docker/.env by default"
    dash, pg = compose["services"]["optuna-dashboard"], compose["services"]["postgres"]
    assert dash.get("env_file") == pg.get("env_file"), "the dashboard must read the same database"


def test_ray_token_authentication_stays_on(compose: dict[str, Any],
                                           env_example: dict[str, str]) -> None:
    for name, svc in compose["services"].items():
        mode = _environment(svc).get("RAY_AUTH_MODE")
        if name in RAY_SERVICES:
            assert mode == "token", f"{name}: RAY_AUTH_MODE={mode!r}, must be token"
        else:
            assert mode in (None, "token"), f"{name}: RAY_AUTH_MODE={mode!r}"
    assert "RAY_AUTH_TOKEN" in env_example


def test_ray_worker_can_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["ray-worker"]
    for key in ("container_name", "ports", "hostname"):
        assert key not in worker, f"ray-worker: {key} breaks `up --scale ray-worker=N`"
    cmd = _command(worker)
    assert "ray start" in cmd and "--address=ray-head:6379" in cmd and "--block" in cmd, cmd
    head = _command(compose["services"]["ray-head"])
    assert "ray start --head" in head and "--block" in head, head


def test_search_submits_a_ray_job(compose: dict[str, Any]) -> None:
    svc = compose["services"]["search"]
    cmd = _command(svc)
    assert cmd.startswith("ray job submit --address http://ray-head:8265 --"), cmd
    assert "jointopt search" in cmd, cmd
    assert str(svc.get("restart", "no")) == "no", "search is one-shot"
    studies = re.findall(r"jointopt (?:search|dashboard|train)\S* (?:--\S+ )*(\S+)",
                         " ".join([cmd, _command(compose["services"]["optuna-dashboard"])]))
    assert studies, cmd
    for s in studies:  # in the image the repository lives at /app
        path = _resolve(s)
        assert path.startswith("/app/") and (ROOT / path[len("/app/"):]).is_file(), path


def test_dockerfile_defaults_to_cpu_base_image() -> None:
    text = DOCKERFILE.read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    first_from = next(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    args = {m[1]: m[2] for ln in lines[:first_from]
            if (m := re.match(r"ARG\s+(\w+)(?:=(\S+))?$", ln))}
    assert args.get("BASE_IMAGE"), "no ARG BASE_IMAGE=<default> before FROM"
    assert not re.search(r"cuda|nvidia", args["BASE_IMAGE"], re.I), args["BASE_IMAGE"]
    assert re.match(r"FROM\s+\$\{?BASE_IMAGE\}?(\s|$)", lines[first_from]), lines[first_from]
    assert re.search(r"pip install[^\n]*\s\.(\s|$)", text), "the repository is not pip-installed"
    assert "python3-venv" in text, "a CUDA base image has no Python; nothing installs it"
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), f"runs as {users[-1:] or 'root'}"
    for ln in lines:
        if ln.upper().startswith(("ENV ", "ARG ")):
            assert not re.search(r"PASSWORD|TOKEN|JOINTOPT_STORAGE", ln), f"secret in image: {ln}"
        if ln.upper().startswith(("COPY ", "ADD ")):
            assert ".env" not in ln, f"copies an env file into the image: {ln}"


def test_dockerignore_keeps_the_context_clean() -> None:
    ignore = {ln.strip().strip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")}
    for must in (".venv", "runs", ".git"):
        assert must in ignore, f".dockerignore lacks {must}"
    assert ignore & {".env", "**/.env", "docker/.env"}, ".dockerignore lets env files in"


def test_env_example_has_every_variable_needed(compose: dict[str, Any],
                                               env_example: dict[str, str]) -> None:
    required = {name for name, op in _refs(COMPOSE.read_text()) if op in (None, "?", ":?")}
    assert not required - set(env_example), \
        f"compose.yaml needs {sorted(required - set(env_example))}; .env.example lacks them"
    needed = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "JOINTOPT_STORAGE",
              "RAY_AUTH_TOKEN"}
    assert not needed - set(env_example), sorted(needed - set(env_example))
    for key in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        assert "change-me" in env_example[key], f"{key} in .env.example must be a placeholder"
    m = re.match(r"postgresql(?:\+\w+)?://([^:@/]+):([^@/]*)@([^:/]+)(?::(\d+))?/(\w+)$",
                 env_example["JOINTOPT_STORAGE"])
    assert m, env_example["JOINTOPT_STORAGE"]
    user, password, host, port, db = m.groups()
    assert (user, password, db) == (env_example["POSTGRES_USER"],
                                    env_example["POSTGRES_PASSWORD"], env_example["POSTGRES_DB"])
    assert host in compose["services"] and port in (None, "5432"), (host, port)


def test_env_file_is_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT)
    assert ignored.returncode == 0, "docker/.env is not git-ignored"
    example = subprocess.run(["git", "check-ignore", "-q", "docker/.env.example"], cwd=ROOT)
    assert example.returncode == 1, "docker/.env.example is ignored: it must be committed"


def test_cluster_study_uses_ray_and_env_storage(monkeypatch: pytest.MonkeyPatch,
                                                env_example: dict[str, str]) -> None:
    from jointopt import Study

    spec = yaml.safe_load(CLUSTER_STUDY.read_text())["search"]["storage"]
    assert spec.startswith("env:") and spec[4:] in env_example, spec
    monkeypatch.setenv(spec[4:], env_example[spec[4:]])
    study = Study.from_yaml(CLUSTER_STUDY)
    s = study.search
    assert s.backend == "ray" and s.ray.address == "auto", (s.backend, s.ray.address)
    assert s.ray.max_concurrent_trials >= 2
    assert study.storage_url == env_example[spec[4:]]
    assert study.output == (ROOT / "runs" / "cluster").resolve()


def _compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) or a standalone v2 ``docker-compose``; None without."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        try:
            out = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        m = re.search(r"version v?(\d+)\.", out.stdout)
        if out.returncode == 0 and m and int(m[1]) >= 2:
            return cmd
    return None


def test_compose_config_validates() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 CLI")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JOINTOPT_", "RAY_", "POSTGRES_", "COMPOSE_"))}
    env["JOINTOPT_ENV_FILE"] = ".env.example"  # docker/.env is not committed
    base = [*cli, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    quiet = subprocess.run([*base, "config", "-q"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    # The model as Compose resolves it: every published port on loopback.
    full = subprocess.run([*base, "--profile", "search", "config"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert full.returncode == 0, full.stderr
    resolved = yaml.safe_load(full.stdout)["services"]
    assert set(SERVICES) <= set(resolved)
    ports = [(n, p) for n, s in resolved.items() for p in s.get("ports", [])]
    assert ports and all(p.get("host_ip") == "127.0.0.1" for _, p in ports), ports
