"""The PostgreSQL test harness (tests/pgserver.py) gives tests a real, isolated server."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgserver
from pgserver import PostgresError, PostgresServer

HERE = Path(__file__).resolve().parent


def _need(server: PostgresServer | None, reason: str | None) -> PostgresServer:
    if server is None:
        message = reason or "PostgreSQL unavailable"
        if pgserver.postgres_required():
            pytest.fail(message)
        pytest.skip(message)
    return server


@pytest.fixture
def server(pg_server: PostgresServer) -> PostgresServer:
    """The session server (conftest: CALLREC_TEST_POSTGRES_URL, else a throwaway cluster)."""
    return pg_server


@pytest.fixture(scope="module")
def own_server() -> Iterator[PostgresServer]:
    """A throwaway cluster of this module's own, which the tests may stop and start."""
    found = _need(pgserver.throwaway_server(), pgserver.throwaway_unavailable_reason())
    with found:
        yield found


def _schema_of(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return str(row[0])


def test_fresh_schema_url_sets_search_path_and_is_empty(server: PostgresServer) -> None:
    with pgserver.fresh_schema(server) as url, psycopg.connect(url) as conn:
        name = _schema_of(url)
        assert name.startswith(pgserver.SCHEMA_PREFIX)
        assert conn.execute("SHOW search_path").fetchone() == (f"{name},public",)
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()
        assert tables == (0,)
        # Unqualified names land in the test's schema.
        conn.execute("CREATE TABLE thing (id int)")
        row = conn.execute(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'thing'::regclass"
        ).fetchone()
        assert row == (name,)
    assert not pgserver.schema_exists(server, name)


def test_two_fresh_schemas_are_isolated(server: PostgresServer) -> None:
    with pgserver.fresh_schema(server) as url_a, pgserver.fresh_schema(server) as url_b:
        assert _schema_of(url_a) != _schema_of(url_b)
        with psycopg.connect(url_a) as conn:
            conn.execute("CREATE TABLE thing (v text)")
            conn.execute("INSERT INTO thing VALUES ('a')")
        with psycopg.connect(url_b) as conn:
            assert conn.execute("SELECT to_regclass('thing')").fetchone() == (None,)
            conn.execute("CREATE TABLE thing (v text)")  # same name, no clash
            assert conn.execute("SELECT count(*) FROM thing").fetchone() == (0,)
        with psycopg.connect(url_a) as conn:
            assert conn.execute("SELECT v FROM thing").fetchall() == [("a",)]


def test_extensions_in_public_resolve_from_a_fresh_schema(server: PostgresServer) -> None:
    if not server.has_pg_trgm:
        pytest.skip("pg_trgm is not installed on this server (postgresql-contrib)")
    with pgserver.fresh_schema(server) as url, psycopg.connect(url) as conn:
        row = conn.execute("SELECT similarity('recording', 'recordings') > 0.5").fetchone()
        assert row == (True,)
        conn.execute("CREATE TABLE doc (body text)")
        conn.execute("CREATE INDEX doc_trgm ON doc USING gin (body gin_trgm_ops)")


def test_schema_url_keeps_other_parameters() -> None:
    url = pgserver.schema_url(
        "postgresql://u:p%40ss@db:5433/app?sslmode=disable&options=-cstatement_timeout%3D5s",
        "t_abc",
    )
    assert url == (
        "postgresql://u:p%40ss@db:5433/app?sslmode=disable"
        "&options=-cstatement_timeout%3D5s%20-csearch_path%3Dt_abc%2Cpublic"
    )
    plain = pgserver.schema_url("postgresql://postgres@127.0.0.1:5432/postgres", "t_x")
    assert plain.endswith("/postgres?options=-csearch_path%3Dt_x%2Cpublic")
    with pytest.raises(ValueError, match="postgresql://"):
        pgserver.schema_url("host=db dbname=app", "t_x")


def _leak_a_transaction(server: PostgresServer, leaked: list[psycopg.Connection]) -> None:
    with pgserver.fresh_schema(server) as url:
        conn = psycopg.connect(url)
        leaked.append(conn)
        conn.execute("CREATE TABLE thing (id int)")  # transaction left open at teardown


def test_schema_left_locked_by_a_leaked_transaction_is_reported_and_dropped(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgserver, "LOCK_TIMEOUT", "200ms")
    leaked: list[psycopg.Connection] = []
    try:
        with pytest.raises(PostgresError, match="leaked an open transaction") as info:
            _leak_a_transaction(server, leaked)
    finally:
        for conn in leaked:
            conn.close()
    name = str(info.value).split()[1]
    assert name.startswith(pgserver.SCHEMA_PREFIX)
    assert not pgserver.schema_exists(server, name)


def test_throwaway_server_stops_and_starts_on_the_same_port_keeping_data(
    own_server: PostgresServer,
) -> None:
    assert own_server.can_restart
    url_before = own_server.url
    with pgserver.fresh_schema(own_server) as url:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE thing (v text)")
            conn.execute("INSERT INTO thing VALUES ('kept')")
        with psycopg.connect(url) as held:
            own_server.stop()
            assert not own_server.is_running
            own_server.stop()  # idempotent
            with pytest.raises(psycopg.OperationalError):
                held.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()
        own_server.start()
        assert own_server.is_running
        own_server.start()  # idempotent
        assert own_server.url == url_before
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM thing").fetchall() == [("kept",)]


def test_closing_a_throwaway_server_removes_it(own_server: PostgresServer) -> None:
    cluster = _need(pgserver.throwaway_server(), pgserver.throwaway_unavailable_reason())
    assert isinstance(cluster, pgserver.ThrowawayCluster)
    assert cluster.url != own_server.url
    assert cluster.startup_seconds < pgserver.START_TIMEOUT
    cluster.close()
    cluster.close()  # idempotent
    assert not cluster.root.exists()
    assert not cluster.is_running
    with pytest.raises(PostgresError, match="closed"):
        cluster.start()


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=HERE,
        env={"PYTHONPATH": str(HERE), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_forgotten_and_orphaned_clusters_are_cleaned_up() -> None:
    if reason := pgserver.throwaway_unavailable_reason():
        pytest.skip(reason)
    # Forgotten (never closed): removed by the atexit safety net.
    out = _run_python("""
        import os, pgserver
        print(pgserver.throwaway_server().root, os.getpid())
    """)
    forgotten, dead_pid = out.split()
    assert not Path(forgotten).exists()
    # Orphaned (its test process was killed, no atexit): reaped when the next cluster starts.
    orphan = pgserver.ThrowawayCluster.create()
    try:
        (orphan.root / "owner").write_text(f"{socket.gethostname()} {dead_pid}\n")
        pgserver._reap_stale_clusters(orphan.root.parent, orphan.bindir, orphan.user)
        assert not orphan.root.exists()
        assert not orphan.is_running
    finally:
        orphan.close()


def test_a_server_from_the_url_is_never_stopped() -> None:
    external = pgserver.ExternalServer("postgresql://postgres:secret@127.0.0.1:5432/postgres")
    assert not external.can_restart
    with pytest.raises(PostgresError, match=r"not ours to stop.*throwaway_server") as info:
        external.stop()
    assert "secret" not in str(info.value)
    with pytest.raises(PostgresError, match="not ours to start"):
        external.start()
    external.close()  # harmless


def test_without_postgres_the_reason_says_how_to_enable_the_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(pgserver.ENV_URL, raising=False)
    monkeypatch.delenv(pgserver.ENV_BINDIR, raising=False)
    monkeypatch.setattr(pgserver, "find_bindir", lambda: None)
    monkeypatch.setattr(pgserver, "_SESSION", None)  # restored afterwards
    assert pgserver.postgres_server() is None
    reason = pgserver.unavailable_reason()
    assert reason is not None
    assert "PostgreSQL tests SKIPPED" in reason
    assert f"export {pgserver.ENV_URL}=postgresql://" in reason
    assert "apt-get install postgresql" in reason
    assert pgserver.ENV_REQUIRED in reason
    assert pgserver.throwaway_server() is None
    assert pgserver.throwaway_unavailable_reason() is not None
    assert "UNAVAILABLE" in pgserver.status_line()


def test_a_wrong_bindir_override_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(pgserver.ENV_BINDIR, str(tmp_path))
    assert pgserver.find_bindir() is None
    reason = pgserver.throwaway_unavailable_reason()
    assert reason is not None
    assert str(tmp_path) in reason


def test_an_unusable_url_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    port = pgserver._free_port()  # nothing listens there
    monkeypatch.setenv(pgserver.ENV_URL, f"postgresql://postgres:pw@127.0.0.1:{port}/postgres")
    monkeypatch.setattr(pgserver, "_SESSION", None)
    with pytest.raises(PostgresError, match="is set but unusable") as info:
        pgserver.postgres_server()
    assert "pw@" not in str(info.value)
    assert pgserver.unavailable_reason() is None
