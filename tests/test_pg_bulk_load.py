"""PostgreSQL's bulk load: into an empty database the secondary indexes are dropped and built
once at the end (and built again by the next start after a load that was killed); a database
with recordings keeps them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from callrec.query import RecordingQuery
from callrec.store import open_store, pgschema, postgres
from callrec.store.pgremember import changed_recordings
from callrec.store.pgschema import DEFERRED, KEPT, TRIGRAM_INDEXES
from callrec.store.postgres import PostgresStore
from test_importer import KILLED_LOAD, assert_searches_match_reference, sample

SECONDARY = set(DEFERRED) | set(TRIGRAM_INDEXES)


def structures(url: str) -> set[str]:
    """The indexes of the test's schema."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'i'"
            " AND relnamespace = current_schema()::regnamespace"
        )
        return {name for (name,) in rows}


def names_key(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conname = 'recording_names_pkey'"
                " AND connamespace = current_schema()::regnamespace"
            )
        ]


def test_the_deferred_structures_are_the_secondary_indexes() -> None:
    assert set(DEFERRED) == {
        "recordings_by_start",
        "recordings_by_caller_start",
        "recordings_by_dialed_start",
        "recordings_by_caller_rev_start",
        "recordings_by_dialed_rev_start",
        "recording_names_pkey",
    }
    assert not KEPT & set(DEFERRED)


@pytest.mark.parametrize("pool_size", [10, 1])
def test_bulk_load_defers_indexes_on_an_empty_database_only(
    pg_url: str, tmp_path: Path, pool_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(pg_url, pool_size=pool_size)
    assert isinstance(store, PostgresStore)
    docs = sample(400, tmp_path)
    builders: dict[int, list[str]] = {}  # thread: the structures it built
    build = pgschema.build

    def recorded(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
        builders.setdefault(threading.get_ident(), []).extend(names)
        build(conn, names)

    monkeypatch.setattr(pgschema, "build", recorded)
    try:
        built = structures(pg_url)
        assert SECONDARY | KEPT | {"recordings_pkey"} <= built
        with store.bulk_load() as deferred:
            assert deferred
            assert not SECONDARY & structures(pg_url)
            assert {"recordings_pkey", *KEPT} <= structures(pg_url)
            store.upsert("cc1", docs)
            # Slow meanwhile, never wrong: infix numbers and name wildcards included.
            assert_searches_match_reference(
                store, store.search("cc1", RecordingQuery(), limit=1000)
            )
        assert structures(pg_url) == built
        # The trigram indexes beside the rest, on a connection of their own when the pool
        # has two.
        if pool_size > 1:
            assert sorted(map(sorted, builders.values())) == sorted(
                [sorted(TRIGRAM_INDEXES), sorted(DEFERRED)]
            )
        else:
            assert list(builders.values()) == [[*DEFERRED, *TRIGRAM_INDEXES]]
        assert names_key(pg_url) == ["PRIMARY KEY (ccid, name, start_ms, id) INCLUDE (sig)"]
        stored = store.search("cc1", RecordingQuery(), limit=1000)
        assert len(stored) == 400
        assert_searches_match_reference(store, stored)

        with store.bulk_load() as deferred:  # not empty any more: nothing is dropped
            assert not deferred
            assert structures(pg_url) == built
    finally:
        store.close()


def test_a_killed_bulk_load_gets_its_indexes_back(pg_url: str, tmp_path: Path) -> None:
    sample(300, tmp_path)  # written to sample.jsonl
    source = tmp_path / "sample.jsonl"
    done = subprocess.run([sys.executable, "-c", KILLED_LOAD, pg_url, str(source)])
    assert done.returncode == -signal.SIGKILL
    assert not SECONDARY & structures(pg_url)
    assert names_key(pg_url) == []

    reopened = open_store(pg_url)
    try:
        assert structures(pg_url) >= SECONDARY
        assert names_key(pg_url) == ["PRIMARY KEY (ccid, name, start_ms, id) INCLUDE (sig)"]
        stored = reopened.search("cc1", RecordingQuery(), limit=1000)
        assert len(stored) == 300
        assert_searches_match_reference(reopened, stored)
    finally:
        reopened.close()


def test_an_import_transaction_fits_the_lock_table(pg_url: str) -> None:
    # A transaction locks each recording it writes; the shared lock table of the server
    # must hold them with room for every other session (32,000 ran a default server out).
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    try:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT current_setting('max_locks_per_transaction')::int"
                " * (current_setting('max_connections')::int"
                " + current_setting('max_prepared_transactions')::int)"
            ).fetchone()
        assert row is not None
        assert 500 <= store.load_size <= max(500, min(8000, row[0] // 2))
        docs = [
            {"id": f"lock{i}", "region": "r", "startTime": "2024-01-01T00:00:00.000+0000"}
            for i in range(store.load_size)
        ]
        assert store.load("cc", docs) == [None] * len(docs)
        assert store.get("cc", f"lock{len(docs) - 1}") is not None
    finally:
        store.close()


def test_a_batch_looks_its_ids_up_by_index_on_a_table_the_planner_would_scan(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's lookup of its ids probes the index of ids even where the planner rates a scan
    of the whole table cheaper (a batch with as many ids as a tenth of the table's rows):
    near 600,000 recordings such a scan took 5x the probes' time."""
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    docs = sample(3000, tmp_path)
    batch = docs[1000:3000]  # 1,000 stored, 1,000 new
    scans: list[tuple[int, int]] = []  # at the transaction's start, then before it writes

    def count(conn: psycopg.Connection[Any]) -> None:
        # What the server counts so far for the connection (its transactions not yet
        # reported included): the difference is the lookup's.
        row = conn.execute(
            "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
            " WHERE relid = 'recordings'::regclass"
        ).fetchone()
        assert row is not None
        scans.append((int(row[0]), int(row[1])))

    def changed(conn: psycopg.Connection[Any], *args: Any) -> None:
        count(conn)
        changed_recordings(conn, *args)

    def write(conn: psycopg.Connection[Any], *args: Any) -> None:
        count(conn)
        store_write(conn, *args)

    store_write = store._write
    try:
        store.load("cc1", docs[:2000])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE recordings")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM recordings WHERE ccid = 'cc1' AND id = ANY(%s)",
                ([d["id"] for d in batch],),
            ).fetchall()
        assert "Seq Scan" in str(plan)  # what the planner would choose by itself
        monkeypatch.setattr(store, "_write", write)
        monkeypatch.setattr(postgres, "changed_recordings", changed)
        results = store.upsert("cc1", batch)
        assert [r["id"] for r in results] == [d["id"] for d in batch]
        assert len(scans) == 2
        (seq_before, index_before), (seq_after, index_after) = scans
        assert seq_after == seq_before
        assert index_after > index_before
    finally:
        store.close()


def test_a_failed_build_stops_the_one_beside_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(pg_url)
    assert isinstance(store, PostgresStore)
    docs = sample(50, tmp_path)
    started = threading.Event()
    outcome: list[str] = []

    def failing(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
        if set(names) <= set(TRIGRAM_INDEXES):  # the build beside: a long one
            conn.execute("SET LOCAL statement_timeout = 0")
            started.set()
            try:
                conn.execute("SELECT pg_sleep(60)")
            except psycopg.errors.QueryCanceled:
                outcome.append("cancelled")
                raise
        else:
            started.wait(10)
            raise RuntimeError("the build failed")

    try:
        load = store.bulk_load()
        assert load.__enter__()  # the indexes dropped
        store.upsert("cc1", docs)
        monkeypatch.setattr(pgschema, "build", failing)
        with pytest.raises(RuntimeError, match="the build failed"):
            load.__exit__(None, None, None)  # the builds, at the end of the load
        assert outcome == ["cancelled"]
    finally:
        store.close()
    monkeypatch.undo()
    reopened = open_store(pg_url)  # builds what the load left missing
    try:
        assert structures(pg_url) >= SECONDARY
        assert len(reopened.search("cc1", RecordingQuery(), limit=100)) == 50
    finally:
        reopened.close()
