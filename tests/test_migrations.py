"""Versioned schema migrations: from an empty database, and from the previous version."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from callrec.model import index_keys, merge_recordings, to_store
from callrec.query import matches, parse_query
from callrec.store import open_store, pgrows, sqliterows
from callrec.store import pgschema as pg_schema
from callrec.store import sqliteschema as sqlite_schema
from conftest import local_recording


def v1_row(rec_id: str, caller: str) -> tuple[Any, ...]:
    doc = merge_recordings(None, local_recording(rec_id, callerPhoneNumber=caller))
    keys = index_keys(doc)
    return (keys.id, keys.region, keys.start_ms, keys.stop_ms, keys.caller, keys.dialed, doc)


def write_v1_sqlite(url: str, rows: list[tuple[Any, ...]]) -> None:
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert sqlite_schema.migrate(conn, target=1) == 1
        for rec_id, region, start, stop, caller, dialed, doc in rows:
            conn.execute(
                "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed, doc)"
                " VALUES ('cc1', ?, ?, ?, ?, ?, ?, ?)",
                (rec_id, region, start, stop, caller, dialed, orjson.dumps(doc)),
            )
    finally:
        conn.close()


def write_v1_postgres(url: str, rows: list[tuple[Any, ...]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert pg_schema.migrate(conn, target=1) == 1
        for rec_id, region, start, stop, caller, dialed, doc in rows:
            conn.execute(
                "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed, doc)"
                " VALUES ('cc1', %s, %s, %s, %s, %s, %s, %s)",
                (rec_id, region, start, stop, caller, dialed, orjson.dumps(doc).decode()),
            )


WRITE_V1 = {"sqlite": write_v1_sqlite, "postgresql": write_v1_postgres}
LATEST = {"sqlite": sqlite_schema.SCHEMA_VERSION, "postgresql": pg_schema.SCHEMA_VERSION}


def test_an_empty_database_gets_the_latest_schema(backend: str, database_url: str) -> None:
    store = open_store(database_url)
    try:
        assert store.schema_version == LATEST[backend]
        assert store.search("cc1", parse_query({"startTime": "0"}), limit=10) == []
    finally:
        store.close()


def test_the_previous_version_is_upgraded_with_its_data(backend: str, database_url: str) -> None:
    if backend == "sqlite":
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    WRITE_V1[backend](database_url, [v1_row("old-1", "+16504668888"), v1_row("old-2", "555")])
    store = open_store(database_url)
    try:
        assert store.schema_version == LATEST[backend]
        # Version 2's reversed numbers were filled in for the rows that were already there.
        found = store.search("cc1", parse_query({"callerPhoneNumber": "*8888"}), limit=10)
        assert [doc["id"] for doc in found] == ["old-1"]
        assert store.get("cc1", "old-2") is not None
    finally:
        store.close()


def test_migrating_twice_changes_nothing(backend: str, database_url: str) -> None:
    open_store(database_url).close()
    store = open_store(database_url)
    try:
        assert store.schema_version == LATEST[backend]
    finally:
        store.close()


def test_a_newer_schema_is_refused(backend: str, database_url: str) -> None:
    open_store(database_url).close()
    if backend == "sqlite":
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA user_version = 99")
        conn.close()
    else:
        with psycopg.connect(database_url, autocommit=True) as pg:
            pg.execute("INSERT INTO schema_migrations (version, description) VALUES (99, 'x')")
    with pytest.raises(RuntimeError, match="newer than this callrec"):
        open_store(database_url)


def write_v3_postgres(url: str, docs: list[dict[str, Any]]) -> None:
    """Recordings and their names as version 3 stored them: names keyed (ccid, name, id)."""
    with psycopg.connect(url, autocommit=True) as conn:
        assert pg_schema.migrate(conn, target=3) == 3
        for doc in docs:
            keys = index_keys(doc)
            conn.execute(
                "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed,"
                " caller_rev, dialed_rev, doc) VALUES ('cc1', %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    keys.id,
                    keys.region,
                    keys.start_ms,
                    keys.stop_ms,
                    keys.caller,
                    keys.dialed,
                    keys.caller[::-1],
                    keys.dialed[::-1],
                    orjson.dumps(doc).decode(),
                ),
            )
            for name in keys.names:
                conn.execute(
                    "INSERT INTO recording_names (ccid, id, name) VALUES ('cc1', %s, %s)",
                    (keys.id, name),
                )


def test_version_3_names_are_rekeyed_in_search_order(pg_server: Any) -> None:
    from callrec.demo import demo_recordings
    from callrec.store import names, search_key
    from pgserver import fresh_schema

    docs = [
        merge_recordings(None, d) for d in demo_recordings(150, seed=3, ccid="cc1", media=False)
    ]
    with fresh_schema(pg_server) as url:
        write_v3_postgres(url, docs)
        store = open_store(url)
        try:
            assert store.schema_version == pg_schema.SCHEMA_VERSION >= 4
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT id, name, start_ms, sig FROM recording_names"
                ).fetchall()
                dictionary = [r[0] for r in conn.execute("SELECT name FROM name_dictionary")]
                key = conn.execute(
                    "SELECT pg_get_indexdef('recording_names_pkey'::regclass)"
                ).fetchone()
            assert key is not None
            assert "(ccid, name, start_ms, id) INCLUDE (sig)" in key[0]
            stored: dict[str, list[tuple[str, int, int]]] = {}
            for rec_id, name, start, sig in rows:
                stored.setdefault(rec_id, []).append((name, start, sig))
            every_name = set()
            for doc in docs:
                keys = index_keys(doc)
                every_name |= set(keys.names)
                entries = stored.get(keys.id, [])
                assert sorted(n for n, _, _ in entries) == sorted(keys.names)
                assert all(start == keys.start_ms for _, start, _ in entries)
                assert all(sig == names.signature(keys.names) for _, _, sig in entries)
            assert len(rows) > len(docs)
            assert sorted(dictionary) == sorted(every_name)
            agent = next(
                event["contact"]
                for doc in docs
                for event in doc["eventHistory"]
                if " " not in event.get("contact", {}).get("firstName", " ")
                and " " not in event["contact"].get("lastName", " ")
            )
            first, last = agent["firstName"], agent["lastName"]
            for user in (first, f"{first} {last}", f"{first} AND {last}", f"{first[:2]}*"):
                query = parse_query({"userName": user})
                expected = sorted((d for d in docs if matches(query, d)), key=search_key)
                found = store.search("cc1", query, limit=1000)
                assert [d["id"] for d in found] == [d["id"] for d in expected], user
                assert expected, user
        finally:
            store.close()


def write_v4_sqlite(path: Path, docs: list[dict[str, Any]]) -> None:
    """Recordings as SQLite schema version 4 stored them: names as (name, pk) pairs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert sqlite_schema.migrate(conn, target=4) == 4
        for doc in docs:
            keys = index_keys(doc)
            pk = conn.execute(
                "INSERT INTO recordings (ccid, id, region, start_ms, stop_ms, caller, dialed,"
                " caller_rev, dialed_rev, doc) VALUES ('cc1', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    keys.id,
                    keys.region,
                    keys.start_ms,
                    keys.stop_ms,
                    keys.caller,
                    keys.dialed,
                    keys.caller[::-1],
                    keys.dialed[::-1],
                    orjson.dumps(doc),
                ),
            ).lastrowid
            conn.executemany(
                "INSERT INTO recording_names (name, pk) VALUES (?, ?)",
                [(name, pk) for name in keys.names],
            )
    finally:
        conn.close()


def test_sqlite_version_4_names_are_rekeyed_with_a_dictionary(tmp_path: Path) -> None:
    from callrec.demo import demo_recordings
    from callrec.store import names, search_key

    docs = [
        merge_recordings(None, d) for d in demo_recordings(150, seed=5, ccid="cc1", media=False)
    ]
    path = tmp_path / "callrec.db"
    write_v4_sqlite(path, docs)
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == sqlite_schema.SCHEMA_VERSION >= 5
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT r.id, n.ccid, n.name, n.start_ms, n.sig FROM recording_names n"
            " JOIN recordings r ON r.pk = n.pk"
        ).fetchall()
        dictionary = dict(conn.execute("SELECT name, entries FROM name_dictionary").fetchall())
        conn.close()
        stored: dict[str, list[tuple[str, int, int]]] = {}
        for rec_id, ccid, name, start, sig in rows:
            assert ccid == "cc1"
            stored.setdefault(rec_id, []).append((name, start, sig))
        counts: dict[str, int] = {}
        for doc in docs:
            keys = index_keys(doc)
            for name in keys.names:
                counts[name] = counts.get(name, 0) + 1
            entries = stored.get(keys.id, [])
            assert sorted(n for n, _, _ in entries) == sorted(keys.names)
            assert all(start == keys.start_ms for _, start, _ in entries)
            assert all(sig == names.signature(keys.names) for _, _, sig in entries)
        assert dictionary == counts
        for user in ("ann", "a* AND *e*", "*o* zoë", f"{next(iter(counts))} AND x*"):
            query = parse_query({"userName": user})
            expected = sorted((d for d in docs if matches(query, d)), key=search_key)
            found = store.search("cc1", query, limit=1000)
            assert [d["id"] for d in found] == [d["id"] for d in expected], user
        assert any(store.search("cc1", parse_query({"userName": n}), limit=1) for n in counts)
    finally:
        store.close()


@pytest.mark.parametrize("version", [3, 4, 5])
def test_an_old_database_left_by_a_killed_bulk_load_upgrades(tmp_path: Path, version: int) -> None:
    """A bulk load drops the secondary indexes and triggers; killed, it leaves them out. The
    migrations that follow must not need them, and the open builds them again."""
    from callrec.store.sqliteschema import DERIVED

    path = tmp_path / "killed.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert sqlite_schema.migrate(conn, target=version) == version
        dropped = conn.execute(
            "SELECT type, name FROM sqlite_master"
            " WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
        assert dropped
        for kind, name in dropped:
            conn.execute(f"DROP {kind.upper()} {name}")
    finally:
        conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == sqlite_schema.SCHEMA_VERSION
        store.upsert("cc1", [local_recording("r1", callerPhoneNumber="+1 650 466 8888")])
        found = store.search("cc1", parse_query({"callerPhoneNumber": "*4668*"}), limit=5)
        assert [d["id"] for d in found] == ["r1"]
    finally:
        store.close()
    with sqlite3.connect(path) as check:
        present = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
    assert set(DERIVED) <= present


def test_sqlite_version_9_keeps_the_ids_unique_by_an_index(tmp_path: Path) -> None:
    """Version 9 writes the recordings table again without its uniqueness constraint (which
    cannot be dropped), keeping every row and pk, and keeps the ids unique by an index that
    a bulk load can drop; the indexes and triggers dropped with the old table are built
    again, and the trigram tables (keyed by pk) still match their rows."""
    path = tmp_path / "v8.db"
    docs = [
        merge_recordings(None, local_recording(f"r{i}", callerPhoneNumber=f"+1650466{i:04}"))
        for i in range(40)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert sqlite_schema.migrate(conn, target=8) == 8
        conn.execute("BEGIN")
        sqliterows.write_rows(
            conn, "cc1", {pk: to_store(None, doc) for pk, doc in enumerate(docs, 1)}, set()
        )
        conn.execute("DELETE FROM recordings WHERE pk = 7")  # a gap in the pks
        conn.execute("DELETE FROM recording_names WHERE pk = 7")
        conn.execute("COMMIT")
        before = conn.execute("SELECT * FROM recordings ORDER BY pk").fetchall()
    finally:
        conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == 9
        found = store.search("cc1", parse_query({"callerPhoneNumber": "*4660012*"}), limit=9)
        assert [d["id"] for d in found] == ["r12"]
        assert store.get("cc1", "r39") == docs[39]
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT * FROM recordings ORDER BY pk").fetchall() == before
        indexes = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
        assert set(sqlite_schema.DERIVED) <= indexes
        assert "sqlite_autoindex_recordings_1" not in indexes
        for table in ("caller_fts", "dialed_fts"):
            conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
        with pytest.raises(sqlite3.IntegrityError, match=r"recordings\.ccid, recordings\.id"):
            conn.execute(
                "INSERT INTO recordings (ccid, id, start_ms, caller, dialed, doc)"
                " VALUES ('cc1', 'r1', 0, '', '', x'')"
            )


def replica_identity(conn: psycopg.Connection[Any]) -> list[str]:
    """The index that logical replication identifies a recording's row by, if any."""
    rows = conn.execute(
        "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = 'recordings'::regclass AND x.indisreplident"
    )
    return [name for (name,) in rows]


def test_postgresql_version_11_keeps_the_ids_unique_by_an_index(pg_url: str) -> None:
    """Version 11 keeps the ids unique by an index instead of the primary key, which a load
    into an empty database can build at its end beside the others; replication identifies
    rows by it as it did by the key."""
    docs = [merge_recordings(None, local_recording(f"r{i}")) for i in range(5)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert pg_schema.migrate(conn, target=10) == 10
        with conn.transaction():
            pgrows.write_rows(conn, "cc1", [to_store(None, d) for d in docs], set())
        before = conn.execute("SELECT * FROM recordings ORDER BY id").fetchall()
        assert replica_identity(conn) == []  # the primary key's, by default
    store = open_store(pg_url)
    try:
        assert store.schema_version == 11
        assert store.get("cc1", "r3") == docs[3]
    finally:
        store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM recordings ORDER BY id").fetchall() == before
        assert replica_identity(conn) == ["recordings_by_id"]
        keys = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'recordings'::regclass"
            " AND contype = 'p'"
        ).fetchall()
        assert keys == []
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO recordings (ccid, id, start_ms, caller, dialed, document)"
                " VALUES ('cc1', 'r1', 0, '', '', '')"
            )
