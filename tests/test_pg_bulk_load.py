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

from callrec.model import to_store, validate_recording
from callrec.query import RecordingQuery
from callrec.store import open_store, pgrows, pgschema, postgres
from callrec.store.pgremember import changed_recordings
from callrec.store.pgschema import BESIDE, BY_ID, DEFERRED, IDS, TRIGRAM_INDEXES
from callrec.store.postgres import PostgresStore
from conftest import local_recording
from test_importer import (
    KILLED_LOAD,
    KILLED_REPEATS,
    MERGED,
    REPEATS,
    assert_loaded_alike_line_by_line,
    assert_searches_match_reference,
    events,
    everything_in,
    history,
    sample,
)
from test_migrations import replica_identity

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
        "recordings_by_id",
        "recording_names_by_recording",
    }
    assert set(BY_ID) <= set(DEFERRED)


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
        assert built >= SECONDARY
        with store.bulk_load() as deferred:
            assert deferred
            assert not SECONDARY & structures(pg_url)  # the index of ids included
            assert store.load("cc1", [to_store(None, doc) for doc in docs]) == [None] * 400
            assert not SECONDARY & structures(pg_url)
            assert store.get("cc1", docs[7]["id"]) == to_store(None, docs[7]).doc
            # Slow meanwhile, never wrong: infix numbers and name wildcards included.
            assert_searches_match_reference(
                store, store.search("cc1", RecordingQuery(), limit=1000)
            )
        assert structures(pg_url) == built
        # Half the builds (BESIDE) beside the rest, on a connection of their own when the pool
        # has two.
        if pool_size > 1:
            assert sorted(map(sorted, builders.values())) == sorted(
                [sorted(BESIDE), sorted(SECONDARY - BESIDE)]
            )
        else:
            assert list(builders.values()) == [[*DEFERRED, *TRIGRAM_INDEXES]]
        assert names_key(pg_url) == ["PRIMARY KEY (ccid, name, start_ms, id) INCLUDE (sig)"]
        with psycopg.connect(pg_url) as conn:
            assert replica_identity(conn) == [IDS]  # set again with the index
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
    # What looks recordings up by id was built by the first merge (an upsert's documents).
    assert not (SECONDARY - set(BY_ID)) & structures(pg_url)
    assert set(BY_ID) <= structures(pg_url)
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

    store_write = pgrows.write_rows
    try:
        store.load("cc1", docs[:2000])
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE recordings")
            plan = conn.execute(
                "EXPLAIN SELECT id FROM recordings WHERE ccid = 'cc1' AND id = ANY(%s)",
                ([d["id"] for d in batch],),
            ).fetchall()
        assert "Seq Scan" in str(plan)  # what the planner would choose by itself
        monkeypatch.setattr(pgrows, "write_rows", write)
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
        if set(names) <= BESIDE:  # the build beside: a long one
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


def counts(url: str) -> tuple[int, int, int]:
    """Rows of recordings, name entries, and name entries once each."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM recordings), (SELECT count(*) FROM recording_names),"
            " (SELECT count(*) FROM (SELECT DISTINCT * FROM recording_names) AS d)"
        ).fetchone()
    assert row is not None
    return row


def test_a_load_into_an_empty_database_merges_its_repeats_when_it_indexes_the_ids(
    pg_url: str, pg_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on SQLite: a load into an empty database drops the index of ids too, inserts a
    recording that comes again again, and merges its rows in the order they were written
    when the index is built at the end, into what a load with the index makes of it."""
    from pgserver import fresh_schema

    # A recording merged and written at a time, while the repeated rows are still being read.
    monkeypatch.setattr(pgrows, "MERGE_BATCH", 1)
    store = open_store(pg_url)
    try:
        with store.bulk_load() as deferred:
            assert deferred
            for batch in REPEATS:
                assert store.load("cc1", batch) == [None] * len(batch)
            assert IDS not in structures(pg_url)
            # A row a batch (a batch's own repeats merged in memory): a, b and c twice.
            names = len(events("x", "Joined").keys.names)
            assert counts(pg_url) == (7, 7 * names, 7 * names - 3 * names)
        assert structures(pg_url) >= SECONDARY
        assert history(store) == MERGED
        assert counts(pg_url) == (4, 4 * names, 4 * names)
        assert_searches_match_reference(store, everything_in(store))
        with fresh_schema(pg_server) as live_url:
            assert_loaded_alike_line_by_line(store, open_store(live_url))
        # The index keeps the ids unique again, and a recording loaded again merges.
        with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO recordings (ccid, id, start_ms, caller, dialed, document)"
                " VALUES ('cc1', 'a', 0, '', '', '')"
            )
        assert store.load("cc1", [events("c", "Left")]) == [None]
        assert history(store)["c"] == ["Joined", "Left"]
        assert counts(pg_url)[0] == 4
    finally:
        store.close()


def test_a_load_that_needs_a_merge_indexes_the_ids_first(pg_url: str) -> None:
    """A recording with no start of its own merges with the stored one, looked up by id: a
    load without the index of ids builds it then, merging the repeats so far."""
    store = open_store(pg_url)
    try:
        with store.bulk_load():
            store.load("cc1", [events("a", "Joined"), events("b", "Joined")])
            store.load("cc1", [events("a", "Left")])
            assert not set(BY_ID) & structures(pg_url)
            later = dict(events("b", "Left").doc)
            later.pop("startTime")
            assert store.load("cc1", [later, events("c", "Joined")]) == [None] * 2
            assert structures(pg_url) & SECONDARY == set(BY_ID)  # built in the load
            assert counts(pg_url)[0] == 3
        assert history(store) == {"a": ["Joined", "Left"], "b": ["Joined", "Left"], "c": ["Joined"]}
    finally:
        store.close()


def test_a_killed_load_with_repeats_has_them_merged_at_the_next_start(
    pg_url: str, tmp_path: Path
) -> None:
    first = sample(3, tmp_path)[0]  # written to sample.jsonl
    done = subprocess.run(
        [sys.executable, "-c", KILLED_REPEATS, pg_url, str(tmp_path / "sample.jsonl")]
    )
    assert done.returncode == -signal.SIGKILL
    assert IDS not in structures(pg_url)
    assert counts(pg_url)[0] == 4

    reopened = open_store(pg_url)
    try:
        assert structures(pg_url) >= SECONDARY
        with psycopg.connect(pg_url) as conn:
            assert replica_identity(conn) == [IDS]
        assert counts(pg_url)[0] == 3
        [merged] = [d for d in everything_in(reopened) if d["id"] == first["id"]]
        assert merged["eventHistory"][-1]["event"] == "Left"
        assert merged["eventHistory"][:-1] == first["eventHistory"]
        assert_searches_match_reference(reopened, everything_in(reopened))
    finally:
        reopened.close()


def test_a_load_goes_on_merging_once_another_process_built_the_index_of_ids(pg_url: str) -> None:
    """A process that starts during a load into an empty database builds what is missing,
    the index of ids included: the load's next recording stored already is merged, not
    refused."""
    store = open_store(pg_url)
    try:
        with store.bulk_load():
            store.load("cc1", [events("a", "Joined"), events("b", "Joined")])
            store.load("cc1", [events("a", "Left")])  # a second row, for now
            open_store(pg_url).close()  # a server starting: builds and merges
            assert structures(pg_url) >= SECONDARY
            assert counts(pg_url)[0] == 2
            batch = [events("b", "Left"), events("c", "Joined")]
            assert store.load("cc1", batch) == [None] * 2
            assert store.load("cc1", [events("d", "Joined")]) == [None]
        assert history(store) == {
            "a": ["Joined", "Left"],
            "b": ["Joined", "Left"],
            "c": ["Joined"],
            "d": ["Joined"],
        }
        assert counts(pg_url)[0] == 4
    finally:
        store.close()


def test_a_server_writing_beside_a_load_without_the_index_of_ids_loses_nothing(
    pg_url: str,
) -> None:
    """A server that was up before a load into an empty database writes beside it: without
    the index of ids, a recording may get a row of the server's and one of the load's. A later
    write starts from both, so that what each holds survives, and the load's end keeps one."""

    def media(*names: str) -> dict[str, Any]:
        files = [{"mediaId": name, "type": "audio/mp3"} for name in names]
        return validate_recording(local_recording("r1", mediaFiles=files), "cc1")

    server = open_store(pg_url)
    loader = open_store(pg_url)
    try:
        with loader.bulk_load() as deferred:
            assert deferred
            assert server.load("cc1", [media("server-1.mp3")]) == [None]
            assert loader.load("cc1", [to_store(None, media("load.mp3"))]) == [None]
            assert counts(pg_url)[0] == 2  # a row each, for now
            assert server.load("cc1", [media("server-2.mp3")]) == [None]
        assert counts(pg_url)[0] == 1
        for store in (server, loader):
            found = store.get("cc1", "r1")
            assert found is not None
            assert sorted(m["mediaId"] for m in found["mediaFiles"]) == [
                "load.mp3",
                "server-1.mp3",
                "server-2.mp3",
            ]
        with psycopg.connect(pg_url) as conn:
            assert replica_identity(conn) == [IDS]
    finally:
        loader.close()
        server.close()
