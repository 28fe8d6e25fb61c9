"""A throw-away PostgreSQL server for tests that need a real multi-client storage.

`provide_postgres()` finds the server binaries (``initdb``, ``pg_ctl``, ``postgres``) on PATH or
under ``/usr/lib/postgresql/*/bin`` -- installing Debian's ``postgresql`` package once when they
are missing and we are root -- creates a cluster in a temporary folder, and starts it on a free
loopback port. It returns a :class:`PostgresServer` whose ``url`` is a SQLAlchemy URL for role and
database ``jointopt`` with a password made up at runtime (never written to a tracked file), and
whose ``stop()``/``start()`` take the server away and bring it back on the same port and data (for
"storage lost mid-run" tests). ``close()`` stops it for good and removes the folder; it also runs
at interpreter exit, so a crashed session does not leave a server behind.

``initdb`` and ``postgres`` refuse to run as root: as root, every server command runs as the
``postgres`` user (or a system user ``jointopt-pg`` created for the purpose) through ``runuser``.
The cluster is for tests only: ``fsync`` is off and the data dies with the folder.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from . import file_lock

__all__ = ["PostgresServer", "ServerUnavailable", "find_server_bin", "provide_postgres",
           "require_postgres"]

_TOOLS = ("initdb", "pg_ctl", "postgres")
_LOCK = Path(tempfile.gettempdir()) / "jointopt-postgresql-install.lock"
_FAILED_MARK = Path(tempfile.gettempdir()) / "jointopt-postgresql-install.failed"
_FALLBACK_USER = "jointopt-pg"
ROLE = DATABASE = "jointopt"


class ServerUnavailable(RuntimeError):
    """No PostgreSQL server can be provided here (the message says why)."""


# ---- binaries ----------------------------------------------------------------------------------
def _is_native(path: Path) -> bool:
    """An ELF executable, not a wrapper script (Debian's pg_wrapper is Perl)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _complete(folder: Path) -> bool:
    return all(os.access(folder / t, os.X_OK) and _is_native(folder / t) for t in _TOOLS)


def _version_key(folder: Path) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in folder.parent.name.split("."))
    except ValueError:
        return (0,)


def find_server_bin() -> Path | None:
    """The folder holding matching initdb, pg_ctl and postgres; None when there is none.

    ``initdb`` on PATH counts when the real file (following links, e.g. /usr/local/bin/initdb
    -> /usr/lib/postgresql/15/bin/initdb) is a native binary with its siblings next to it;
    otherwise the newest ``/usr/lib/postgresql/<version>/bin`` wins.
    """
    on_path = shutil.which("initdb")
    if on_path:
        real = Path(on_path).resolve().parent
        if _complete(real):
            return real
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    return next((d for d in versions if _complete(d)), None)


def _install() -> Path:
    """apt-get install postgresql (root only, once per machine); the bin folder."""
    if os.geteuid() != 0:
        raise ServerUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) are not "
                                "installed and we are not root to apt-get install postgresql")
    if not shutil.which("apt-get"):
        raise ServerUnavailable("PostgreSQL server binaries are not installed and apt-get is "
                                "not available")
    with file_lock(_LOCK):
        found = find_server_bin()  # another process may have installed it while we waited
        if found:
            return found
        if _FAILED_MARK.exists():
            raise ServerUnavailable(f"an earlier postgresql install failed (delete {_FAILED_MARK} "
                                    f"to retry): {_FAILED_MARK.read_text()[-500:]}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]
        for cmd in (apt + ["update"], apt + ["install", "-y", "postgresql"]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if proc.returncode != 0:
                # Remember the failure so a later session does not retry for minutes.
                _FAILED_MARK.write_text(f"{' '.join(cmd)}: {proc.stderr.strip()}")
                raise ServerUnavailable(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")
    found = find_server_bin()
    if found is None:
        raise ServerUnavailable("apt-get installed postgresql but no initdb/pg_ctl/postgres "
                                "folder was found under /usr/lib/postgresql")
    return found


# ---- the unprivileged user ---------------------------------------------------------------------
def _server_user() -> str | None:
    """The user server commands run as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)),
                   "/bin/false")
    proc = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", nologin,
                           _FALLBACK_USER], capture_output=True, text=True)
    if proc.returncode != 0 and "already exists" not in proc.stderr:
        raise ServerUnavailable(f"running as root, initdb needs an unprivileged user; "
                                f"`useradd {_FALLBACK_USER}` failed: {proc.stderr.strip()}")
    return _FALLBACK_USER


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the server --------------------------------------------------------------------------------
class PostgresServer:
    """One cluster in a temporary folder, served on 127.0.0.1:``port``."""

    _superuser = "postgres"  # reached only over the cluster's own unix socket (trust)

    def __init__(self, bindir: Path, *, user: str | None = None) -> None:
        self.bindir = bindir
        self.user = user
        self.password = secrets.token_urlsafe(24)  # URL-safe: no quoting needed in the URL
        # Not under pytest's basetemp: that folder is 0700 root, so the server user could not
        # reach its data. mkdtemp gives a fresh 0700 folder that we hand over to that user.
        self.root = Path(tempfile.mkdtemp(prefix="jointopt-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = 0
        self._running = False
        self._closed = False
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    # -- what tests use
    @property
    def url(self) -> str:
        return (f"postgresql+psycopg2://{ROLE}:{self.password}@127.0.0.1:{self.port}/"
                f"{DATABASE}")

    @property
    def running(self) -> bool:
        return self._running

    def start(self, *, timeout: float = 60) -> None:
        """Start (or restart after `stop`) the server on its port, and wait until it answers."""
        if self._closed:
            raise RuntimeError("the server was closed")
        if self._running:
            return
        r = self._run([self._tool("pg_ctl"), "start", "-w", "-t", str(int(timeout)),
                       "-D", str(self.data), "-l", str(self.log)], check=False,
                      timeout=timeout + 30)
        if r.returncode != 0:
            raise ServerUnavailable(f"pg_ctl start failed (rc {r.returncode}): "
                                    f"{(r.stderr or r.stdout).strip()[-300:]}; "
                                    f"server log: {self.log_tail()}")
        self._running = True
        self._wait_ready(timeout)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        if not self._running and not (self.data / "postmaster.pid").exists():
            return
        self._run([self._tool("pg_ctl"), "stop", "-w", "-t", "60", "-m", mode,
                   "-D", str(self.data)], check=False, timeout=90)
        self._running = False

    def close(self) -> None:
        """Stop for good and remove the folder (idempotent, never raises)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        except Exception:  # noqa: BLE001  (a finalizer: report nothing, leave nothing running)
            with contextlib.suppress(Exception):
                self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def connect(self, *, superuser: bool = False):  # type: ignore[no-untyped-def]
        """A psycopg2 connection: as the test role over TCP, or as the superuser over the
        cluster's unix socket (trust)."""
        import psycopg2

        if superuser:
            return psycopg2.connect(host=str(self.sockets), port=self.port, dbname="postgres",
                                    user=self._superuser, connect_timeout=5)
        return psycopg2.connect(host="127.0.0.1", port=self.port, dbname=DATABASE, user=ROLE,
                                password=self.password, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """A new, empty database owned by the test role; its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        conn = self.connect(superuser=True)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        finally:
            conn.close()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    # -- setup
    def create(self) -> None:
        """initdb, configure, start on a free port, create role and database."""
        self._run([self._tool("initdb"), "-D", str(self.data), "-U", self._superuser,
                   "-E", "UTF8", "--locale=C", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"], timeout=120)
        self._as_user(lambda: self.sockets.mkdir(mode=0o700))
        for attempt in range(3):
            self.port = _free_port()
            self._configure()
            try:
                self.start()
                break
            except ServerUnavailable:
                # Someone may have taken the port between our probe and the server's bind.
                log = self.log_tail(4000)
                if attempt == 2 or not ("already in use" in log
                                        or "could not create any TCP/IP sockets" in log):
                    raise
        conn = self.connect(superuser=True)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (self.password,))
                cur.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        finally:
            conn.close()
        with contextlib.closing(self.connect()) as c, c.cursor() as cur:
            cur.execute("SELECT 1")

    def _configure(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.sockets}'",
            "max_connections": "100",
            "shared_buffers": "32MB",
            # A throw-away cluster: durability buys nothing and costs seconds on a busy disk.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        conf = self.data / "postgresql.auto.conf"
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        self._as_user(lambda: conf.write_text(
            "# Do not edit: written by tests/helpers/postgres.py\n" + text))

    def _wait_ready(self, timeout: float) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect(superuser=True).close()
                return
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"server did not accept connections: {e}; "
                                            f"log: {self.log_tail()}") from e
                time.sleep(0.2)

    # -- running things as the server user
    def _tool(self, name: str) -> str:
        return str(self.bindir / name)

    def _run(self, cmd: list[str], *, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if self.user is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.user, "--", *cmd]
            else:
                cmd = ["su", self.user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # cwd: the server user may not be allowed into the caller's folder.
        # stdin/stdout/stderr: pg_ctl start leaves the postmaster running; it must not hold our
        # pipes open (it logs to the file), so output goes through temporary files.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err, text=True, timeout=timeout)
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise ServerUnavailable(f"`{shlex.join(cmd)}` failed (rc {result.returncode}): "
                                    f"{(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def _as_user(self, fn) -> None:  # type: ignore[no-untyped-def]
        """Run ``fn`` (a file operation in our folder), then give what it made to the server
        user."""
        fn()
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            for path in (self.sockets, self.data / "postgresql.auto.conf"):
                if path.exists():
                    os.chown(path, pw.pw_uid, pw.pw_gid)


def provide_postgres() -> PostgresServer:
    """A started server (see the module docstring); raises ServerUnavailable with the reason."""
    bindir = find_server_bin() or _install()
    server = PostgresServer(bindir, user=_server_user())
    atexit.register(server.close)
    try:
        server.create()
    except BaseException:
        server.close()
        raise
    return server


def require_postgres() -> PostgresServer:
    """`provide_postgres()`, or skip the calling test with the reason."""
    try:
        return provide_postgres()
    except ServerUnavailable as e:
        pytest.skip(f"PostgreSQL test server unavailable: {e}")
