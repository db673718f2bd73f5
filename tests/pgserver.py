"""A real PostgreSQL server for the tests.

Where the server comes from:

* ``CALLREC_TEST_POSTGRES_URL`` set (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``):
  the tests use that server. It is never stopped or restarted (``can_restart`` is False).
* otherwise a throwaway cluster is created from the installed PostgreSQL binaries
  (``initdb`` + ``pg_ctl`` in a temp dir, 127.0.0.1 on a free port, trust auth, fsync off),
  run as the ``postgres`` OS user when we are root (initdb refuses root). It is stopped and
  removed at the end (``close()``, and an ``atexit`` safety net).
* neither possible: :func:`postgres_server` returns None and :func:`unavailable_reason` says,
  loudly, how to enable the PostgreSQL tests; callers skip them (or fail, when
  ``CALLREC_TEST_POSTGRES_REQUIRED=1`` -- see :func:`postgres_required`).

Per-test isolation is a fresh schema: :func:`fresh_schema` yields a URL whose libpq ``options``
select a new empty schema (``search_path=t_<hex>,public``) for every connection made with it,
and drops the schema afterwards.

Fault tests that stop and restart the server use :func:`throwaway_server`, which always
starts an own cluster, even when ``CALLREC_TEST_POSTGRES_URL`` is set.

Nothing here depends on pytest.
"""

from __future__ import annotations

import atexit
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

ENV_URL = "CALLREC_TEST_POSTGRES_URL"
"""Use this (already running) server instead of starting a throwaway cluster."""
ENV_BINDIR = "CALLREC_TEST_POSTGRES_BINDIR"
"""Directory holding ``initdb``, ``pg_ctl`` and ``postgres``, overriding the search."""
ENV_REQUIRED = "CALLREC_TEST_POSTGRES_REQUIRED"
"""When ``1``, a missing PostgreSQL is an error rather than a skip (for CI)."""

START_TIMEOUT = 60
"""Seconds ``pg_ctl start`` may wait for the server to accept connections."""
STOP_TIMEOUT = 30
CONNECT_TIMEOUT = 10
LOCK_TIMEOUT = "5s"
"""How long dropping a test schema waits for locks before hunting the leaked transaction."""
OS_USER = "postgres"
"""The OS user that runs initdb/pg_ctl/postgres when the tests run as root."""
SUPERUSER = "postgres"
"""The database superuser of a throwaway cluster."""
SCHEMA_PREFIX = "t_"

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_BINDIR_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # macOS Homebrew (arm64)
    "/usr/local/opt/postgresql@*/bin",  # macOS Homebrew (x86_64)
)
_DIR_PREFIX = "callrec-pg-"
_OWNER_FILE = "owner"
_LOG_TAIL_LINES = 40


class PostgresError(RuntimeError):
    """PostgreSQL should be usable but is not (a start failed, the given URL does not answer)."""


# --------------------------------------------------------------------------- binaries


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); unparsable versions sort last."""
    numbers = re.findall(r"\d+", bindir.parent.name)
    return tuple(int(n) for n in numbers) if numbers else (-1,)


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        done = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return Path(out) if out else None


def find_bindir() -> Path | None:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Looks at ``$CALLREC_TEST_POSTGRES_BINDIR`` (exclusively, when set), then
    ``pg_config --bindir``, then the highest version under the usual package locations
    (``/usr/lib/postgresql/*/bin`` ...), then ``initdb`` on PATH.
    """
    override = os.environ.get(ENV_BINDIR, "").strip()
    if override:
        return Path(override) if _has_binaries(Path(override)) else None
    candidates: list[Path] = []
    from_pg_config = _pg_config_bindir()
    if from_pg_config is not None:
        candidates.append(from_pg_config)
    globbed: list[Path] = []
    for pattern in _BINDIR_GLOBS:
        root, _, rest = pattern.partition("*")
        parent = Path(root).parent
        if parent.is_dir():
            globbed.extend(parent.glob(Path(root).name + "*" + rest))
    candidates.extend(sorted(globbed, key=_version_key, reverse=True))
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    return next((c for c in candidates if _has_binaries(c)), None)


def _run_as_user() -> pwd.struct_passwd | None:
    """The OS user to run the server binaries as: ``postgres`` when we are root, else None.

    Raises KeyError when we are root and there is no such user.
    """
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(OS_USER)


def throwaway_unavailable_reason() -> str | None:
    """Why :func:`throwaway_server` cannot start a cluster here (None when it can)."""
    problem = _throwaway_problem()
    if problem is None:
        return None
    return (
        "PostgreSQL stop/restart tests SKIPPED -- they need a cluster of their own, "
        f"but {problem}. "
        "To run them, install the PostgreSQL server binaries (e.g. `apt-get install postgresql`) "
        f"or set {ENV_BINDIR}=/path/to/bin."
    )


def _throwaway_problem() -> str | None:
    if find_bindir() is None:
        override = os.environ.get(ENV_BINDIR, "").strip()
        if override:
            return f"{ENV_BINDIR}={override} does not contain executable " + ", ".join(
                _REQUIRED_BINARIES
            )
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) were found "
            "(looked at `pg_config --bindir`, " + ", ".join(_BINDIR_GLOBS) + " and PATH)"
        )
    try:
        _run_as_user()
    except KeyError:
        return (
            f"the tests run as root, initdb refuses to run as root, and there is no "
            f"'{OS_USER}' OS user to run it as (create one, e.g. `useradd --system {OS_USER}`)"
        )
    return None


def _loud_message(problem: str) -> str:
    return (
        "PostgreSQL tests SKIPPED -- no PostgreSQL server available: "
        f"{ENV_URL} is not set and {problem}. To run them, EITHER point the tests at a server "
        f"you own: `export {ENV_URL}=postgresql://postgres@127.0.0.1:5432/postgres` (a role that "
        "may CREATE SCHEMA there; every test gets its own schema, dropped afterwards), "
        "OR install the PostgreSQL server binaries (e.g. `apt-get install postgresql`, "
        "`dnf install postgresql-server`, `brew install postgresql@16`; or set "
        f"{ENV_BINDIR}=/path/to/bin) so the tests start a throwaway cluster themselves. "
        f"Set {ENV_REQUIRED}=1 to make this an error instead of a skip."
    )


def postgres_required() -> bool:
    """True when ``CALLREC_TEST_POSTGRES_REQUIRED=1``: callers should fail instead of skip."""
    return os.environ.get(ENV_REQUIRED, "").strip().lower() in ("1", "true", "yes")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- servers


class PostgresServer:
    """A PostgreSQL server the tests may use.

    ``url`` is an admin URL to a database in which we may create schemas (and extensions).
    ``can_restart`` tells whether :meth:`stop` and :meth:`start` are allowed: only for our
    own throwaway clusters, never for a server given by ``CALLREC_TEST_POSTGRES_URL``.
    """

    can_restart: bool = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.has_pg_trgm = False

    @property
    def is_running(self) -> bool:
        """Whether the server is up (assumed for servers we do not manage)."""
        return True

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (only when ``can_restart``)."""
        raise PostgresError(
            f"{redact(self.url)} is not ours to stop; use throwaway_server() for stop/start tests"
        )

    def start(self) -> None:
        """Start the server again (only when ``can_restart``)."""
        raise PostgresError(
            f"{redact(self.url)} is not ours to start; use throwaway_server() for stop/start tests"
        )

    def close(self) -> None:
        """Release the server: stops and removes a throwaway cluster; nothing otherwise."""

    def describe(self) -> str:
        """One line for logs and report headers."""
        return f"PostgreSQL at {redact(self.url)} (from {ENV_URL})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def prepare(self) -> None:
        """Check the server answers and install ``pg_trgm`` into ``public`` if possible."""
        try:
            with _admin_connect(self.url) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise PostgresError(f"cannot connect to {redact(self.url)}: {exc}") from exc
        self.has_pg_trgm = _ensure_pg_trgm(self.url)


class ExternalServer(PostgresServer):
    """A server we were given (``CALLREC_TEST_POSTGRES_URL``): used, never stopped."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by(path: Path, uid: int) -> bool:
    """Whether ``uid`` may traverse every directory from ``/`` down to ``path``."""
    for directory in (path, *path.parents):
        st = directory.stat()
        if not (st.st_mode & stat.S_IXOTH or (st.st_uid == uid and st.st_mode & stat.S_IXUSR)):
            return False
    return True


def _temp_parent(user: pwd.struct_passwd | None) -> Path:
    base = Path(tempfile.gettempdir()).resolve()
    if user is None or _traversable_by(base, user.pw_uid):
        return base
    fallback = Path("/tmp")
    if _traversable_by(fallback, user.pw_uid):
        return fallback
    raise PostgresError(f"OS user {user.pw_name} cannot reach {base} nor /tmp for a data dir")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ThrowawayCluster(PostgresServer):
    """Our own cluster in a temp dir: ``initdb`` once, then :meth:`start` / :meth:`stop` at will.

    Listens on 127.0.0.1 on a fixed free port (kept across restarts), unix socket inside the
    temp dir, trust auth, fsync off. Use :meth:`create`; :meth:`close` stops it (immediate)
    and removes the directory -- also done at interpreter exit if forgotten.
    """

    can_restart = True

    def __init__(self, bindir: Path, user: pwd.struct_passwd | None, root: Path) -> None:
        self.bindir = bindir
        self.user = user
        self.root = root
        self.data_dir = root / "data"
        self.log_path = root / "server.log"
        self.port = _free_port()
        self.startup_seconds = 0.0
        """Wall time of :meth:`create` (initdb + first start)."""
        self._owner_pid = os.getpid()
        self._closed = False
        super().__init__(self._url())

    def _url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, bindir: Path | None = None) -> ThrowawayCluster:
        """initdb a new cluster in a temp dir and start it; raises PostgresError on failure."""
        bindir = bindir or find_bindir()
        if bindir is None:
            raise PostgresError(_throwaway_problem() or "no PostgreSQL binaries")
        try:
            user = _run_as_user()
        except KeyError as exc:
            raise PostgresError(_throwaway_problem() or f"no OS user {OS_USER}") from exc
        parent = _temp_parent(user)
        _reap_stale_clusters(parent, bindir, user)
        began = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=parent))
        (root / _OWNER_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(bindir, user, root)
        _LIVE.add(cluster)
        try:
            cluster._initdb()
            for attempt in range(3):
                try:
                    cluster.start()
                    break
                except PostgresError:
                    # Someone took our "free" port between probing and binding: take another.
                    if attempt == 2 or "already in use" not in cluster.log_tail():
                        raise
                    cluster.port = _free_port()
                    cluster.url = cluster._url()
            cluster.prepare()
        except BaseException:
            cluster.close()
            raise
        cluster.startup_seconds = time.monotonic() - began
        log.info("started %s in %.2fs", cluster.describe(), cluster.startup_seconds)
        return cluster

    def _run(
        self, program: str, args: Sequence[str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        user = self.user
        return subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )

    def _initdb(self) -> None:
        done = self._run(
            "initdb",
            [
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            timeout=START_TIMEOUT,
        )
        if done.returncode != 0:
            raise PostgresError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        socket_dir = str(self.root).replace("'", "''")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{socket_dir}'",
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "'16MB'",
            "max_connections": "100",
            "logging_collector": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# callrec throwaway test cluster\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", ["-D", str(self.data_dir), *args], timeout=timeout)

    @property
    def is_running(self) -> bool:
        """Whether the postmaster of this cluster is up (``pg_ctl status``)."""
        if self._closed or not self.data_dir.is_dir():
            return False
        return self._pg_ctl("status", timeout=STOP_TIMEOUT).returncode == 0

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Start the server on the same port and data dir (no-op when running)."""
        if self._closed:
            raise PostgresError("this throwaway cluster is closed")
        if self.is_running:
            return
        args = ["-w", "-t", str(START_TIMEOUT), "-l", str(self.log_path), "-o", f"-p {self.port}"]
        try:
            done = self._pg_ctl("start", *args, timeout=START_TIMEOUT + 15)
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(
                f"PostgreSQL did not start within {START_TIMEOUT}s; server log tail:\n"
                + self.log_tail()
            ) from exc
        if done.returncode != 0:
            raise PostgresError(
                f"pg_ctl start failed ({done.returncode}): {done.stderr.strip()}\n"
                f"server log tail:\n{self.log_tail()}"
            )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: like a crash; or ``fast``); no-op when stopped."""
        if self._closed or not self.is_running:
            return
        done = self._pg_ctl("stop", "-m", mode, "-w", "-t", str(STOP_TIMEOUT), timeout=60)
        if done.returncode != 0:
            raise PostgresError(
                f"pg_ctl stop failed ({done.returncode}): {done.stderr.strip()}\n"
                f"server log tail:\n{self.log_tail()}"
            )

    def close(self) -> None:
        """Stop the server (immediate) and delete its directory. Idempotent."""
        if self._closed:
            return
        try:
            self.stop("immediate")
        except (PostgresError, OSError, subprocess.SubprocessError) as exc:
            log.warning("stopping %s failed (%s); sending SIGQUIT", self.describe(), exc)
            _kill_postmaster(self.data_dir)
        self._closed = True
        _LIVE.discard(self)
        shutil.rmtree(self.root, ignore_errors=True)

    def describe(self) -> str:
        as_user = f" as OS user {self.user.pw_name}" if self.user else ""
        return (
            f"throwaway PostgreSQL cluster at {self.url} "
            f"(binaries {self.bindir}{as_user}, dir {self.root})"
        )


def _kill_postmaster(data_dir: Path) -> None:
    """Last resort: SIGQUIT (immediate shutdown) the postmaster named in ``postmaster.pid``."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
    except (OSError, ValueError, IndexError):
        pass


def _reap_stale_clusters(parent: Path, bindir: Path, user: pwd.struct_passwd | None) -> None:
    """Stop and remove throwaway clusters left behind by test runs that were killed.

    Only directories whose owner process (same host) no longer exists are touched.
    """
    host = socket.gethostname()
    for root in parent.glob(_DIR_PREFIX + "*"):
        try:
            owner_host, owner_pid = (root / _OWNER_FILE).read_text().split()
            if owner_host != host or _process_alive(int(owner_pid)):
                continue
            stale = ThrowawayCluster(bindir, user, root)
            stale.close()
            log.info("removed stale throwaway cluster %s", root)
        except (OSError, ValueError):
            continue


_LIVE: set[ThrowawayCluster] = set()


def _close_all() -> None:
    """atexit safety net: close the session server and every throwaway cluster this process made."""
    close_session()
    for cluster in list(_LIVE):
        if cluster._owner_pid == os.getpid():  # not in forked children
            cluster.close()


atexit.register(_close_all)


# --------------------------------------------------------------------------- session server


@dataclass
class _Session:
    server: PostgresServer | None = None
    reason: str | None = None  # why there is no server (skip)
    error: str | None = None  # why there should be a server but is not (fail)


_SESSION: _Session | None = None
_SESSION_LOCK = threading.Lock()


def _open_session() -> _Session:
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        server = ExternalServer(url)
        try:
            if urlsplit(url).scheme not in ("postgres", "postgresql"):
                raise PostgresError(f"expected a postgresql:// URL, got {redact(url)}")
            server.prepare()
        except PostgresError as exc:
            return _Session(error=f"{ENV_URL} is set but unusable: {exc}")
        return _Session(server=server)
    problem = _throwaway_problem()
    if problem is not None:
        reason = _loud_message(problem)
        log.warning("%s", reason)
        return _Session(reason=reason)
    try:
        return _Session(server=ThrowawayCluster.create())
    except PostgresError as exc:
        return _Session(error=f"could not start a throwaway PostgreSQL cluster: {exc}")


def postgres_server() -> PostgresServer | None:
    """The session-wide server: ``CALLREC_TEST_POSTGRES_URL``, else a throwaway cluster.

    Returns None when PostgreSQL is not available at all (see :func:`unavailable_reason`).
    Raises PostgresError when it should be available but is not (the URL does not answer,
    the cluster does not start): that is a broken setup, not a reason to skip. The result is
    computed once per process; :func:`close_session` releases it.
    """
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = _open_session()
        session = _SESSION
    if session.error is not None:
        raise PostgresError(session.error)
    return session.server


def unavailable_reason() -> str | None:
    """Why :func:`postgres_server` returned None: a loud message on how to enable the tests."""
    with _SESSION_LOCK:
        return _SESSION.reason if _SESSION is not None else None


def close_session() -> None:
    """Close the session server (a throwaway cluster is stopped and removed)."""
    global _SESSION
    with _SESSION_LOCK:
        session, _SESSION = _SESSION, None
    if session is not None and session.server is not None:
        session.server.close()


def status_line() -> str:
    """Where PostgreSQL tests will get their server from, without starting anything."""
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        return f"postgresql: {redact(url)} (from {ENV_URL})"
    problem = _throwaway_problem()
    if problem is not None:
        return "postgresql: UNAVAILABLE -- " + _loud_message(problem)
    return f"postgresql: throwaway cluster from {find_bindir()} (set {ENV_URL} to use a server)"


def throwaway_server() -> ThrowawayCluster | None:
    """A NEW cluster of our own (``can_restart``), even when ``CALLREC_TEST_POSTGRES_URL`` is set.

    For tests that stop and restart the server. Returns None when no cluster can be started
    here (reason: :func:`throwaway_unavailable_reason`). The caller must ``close()`` it
    (it is also closed at interpreter exit).
    """
    if throwaway_unavailable_reason() is not None:
        return None
    return ThrowawayCluster.create()


# --------------------------------------------------------------------------- schemas


def _admin_connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)


def _ensure_pg_trgm(url: str) -> bool:
    """``CREATE EXTENSION IF NOT EXISTS pg_trgm`` in ``public``; False (logged) if impossible."""
    statement = "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"
    for _ in range(2):  # a concurrent creator can make the first attempt fail
        try:
            with _admin_connect(url) as conn:
                conn.execute(statement)
            return True
        except psycopg.errors.UniqueViolation:
            continue
        except psycopg.Error as exc:
            log.warning("pg_trgm is not available on %s: %s", redact(url), exc)
            return False
    return False


def schema_url(url: str, schema: str) -> str:
    """``url`` whose connections use ``search_path=<schema>,public`` (libpq ``options``).

    Other query parameters are kept; an existing ``options`` value is extended.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL, got {redact(url)}")
    option = f"-csearch_path={schema},public"
    query: list[tuple[str, str]] = []
    merged = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "options":
            value = f"{value} {option}".strip()
            merged = True
        query.append((key, value))
    if not merged:
        query.append(("options", option))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="")))


def create_schema(server: PostgresServer) -> tuple[str, str]:
    """Create a new empty uniquely named schema; returns ``(name, url selecting it)``."""
    name = f"{SCHEMA_PREFIX}{uuid.uuid4().hex}"
    with _admin_connect(server.url) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name, schema_url(server.url, name)


_LOCK_HOLDERS = """
SELECT DISTINCT l.pid
FROM pg_locks l
JOIN pg_namespace n ON n.nspname = %(schema)s
LEFT JOIN pg_class c ON l.locktype = 'relation' AND c.oid = l.relation
WHERE l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (c.relnamespace = n.oid
       OR (l.locktype = 'object' AND l.classid = 'pg_namespace'::regclass AND l.objid = n.oid))
"""


def drop_schema(server: PostgresServer, name: str) -> None:
    """``DROP SCHEMA name CASCADE``.

    If a leaked connection still holds locks in the schema (an open transaction), its backend
    is terminated so the schema can go, and PostgresError reports the leak afterwards.
    """
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
    with _admin_connect(server.url) as conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        try:
            conn.execute(drop)
            return
        except psycopg.errors.LockNotAvailable:
            pass
        pids = [row[0] for row in conn.execute(_LOCK_HOLDERS, {"schema": name})]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        conn.execute(drop)
    raise PostgresError(
        f"schema {name} was still locked at teardown by backend(s) {pids}: a test leaked an "
        "open transaction/connection (the backends were terminated, the schema dropped)"
    )


@contextmanager
def fresh_schema(server: PostgresServer) -> Iterator[str]:
    """Yield a URL selecting a new, empty schema (``t_<hex>``, then ``public``); drop it after.

    Every connection made with the URL gets ``search_path=t_<hex>,public`` via libpq's
    ``options``, so unqualified names land in the test's schema and extensions installed in
    ``public`` (pg_trgm) still resolve. The drop is skipped when the server is stopped
    (a throwaway cluster that a fault test left down is discarded anyway).
    """
    name, url = create_schema(server)
    try:
        yield url
    finally:
        if server.is_running:
            drop_schema(server, name)


def schema_exists(server: PostgresServer, name: str) -> bool:
    """Whether a schema of that name exists (for tests of this module)."""
    with _admin_connect(server.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)
        ).fetchone()
    return bool(row and row[0])
