"""Infix number patterns on SQLite read by blocks of recordings (``store/sqliteblocks``).

Blocks of 8 recordings here (4,096 in use): a few hundred recordings make dozens of blocks.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callrec.doccodec import decode
from callrec.query import RecordingQuery, format_instant, parse_instant, parse_query
from callrec.store import SearchKey, open_store, sqliteblocks
from callrec.store.sqlite import SQLiteStore
from callrec.store.sqliteschema import SCHEMA_VERSION
from callrec.store.sqlsearch import Plan
from pattern_cases import CCID, all_pages, expected_ids, queries, recordings


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqliteblocks, "BLOCK_BITS", 3)


def open_loaded(path: Path, docs: list[dict[str, Any]]) -> SQLiteStore:
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    for start in range(0, len(docs), 50):
        store.upsert(CCID, docs[start : start + 50])
    return store


@pytest.fixture(params=["in time order", "nearly in time order", "shuffled"])
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SQLiteStore, bool]]:
    """A store, and whether its recordings were written in about the order they happened.
    Nearly: each moved up to 12 places, so that neighbouring blocks overlap in time."""
    docs = recordings()
    rng = random.Random(3)
    in_order = request.param != "shuffled"
    if request.param == "nearly in time order":
        docs = [d for _, d in sorted((i + rng.uniform(0, 12), d) for i, d in enumerate(docs))]
    elif not in_order:
        rng.shuffle(docs)
    store = open_loaded(tmp_path / "callrec.db", docs)
    try:
        yield store, in_order
    finally:
        store.close()


def block_pages(store: SQLiteStore, params: dict[str, str], limit: int) -> list[str]:
    """Every page through the block reading itself (whatever the plan would choose)."""
    plan = Plan(trigram_numbers=frozenset({"caller", "dialed"}))

    def read(query: RecordingQuery, after: SearchKey | None, limit: int) -> list[bytes]:
        return sqliteblocks.read_page(
            store._read(), CCID, query, plan, limit=limit, after=after, region=None
        )

    return all_pages(read, params, limit)


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_block_reading_gives_the_reference_pages(
    loaded: tuple[SQLiteStore, bool], limit: int
) -> None:
    """Exact whether the blocks overlap in time or not (then it reads further)."""
    store, _ = loaded
    found = 0
    for params in queries(store):
        expected = expected_ids(store, params)
        assert block_pages(store, params, limit) == expected, params
        found += len(expected)
    assert found > 100  # the patterns are not trivial


def test_search_reads_by_blocks_only_when_recordings_came_in_order(
    loaded: tuple[SQLiteStore, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, in_order = loaded
    overlap = sqliteblocks.overlap(store._read())
    assert overlap < sqliteblocks.IN_ORDER if in_order else overlap > 10
    reads = []
    original = sqliteblocks.read_page

    def counted(*args: Any, **kwargs: Any) -> list[bytes]:
        reads.append(args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(sqliteblocks, "read_page", counted)
    for params in queries(store):
        ids = [d["id"] for d in store.search(CCID, parse_query(params), limit=10_000)]
        assert ids == expected_ids(store, params), params
    assert len(reads) == (len(queries(store)) if in_order else 0)


def test_a_page_ends_after_the_first_blocks_when_recordings_came_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_loaded(tmp_path / "callrec.db", recordings())
    try:
        conn = store._read()
        ranges: list[tuple[int, int]] = []
        original = sqliteblocks._best

        def counted(*args: Any) -> Any:
            ranges.append(args[-1])
            return original(*args)

        monkeypatch.setattr(sqliteblocks, "_best", counted)
        params = {"dialedPhoneNumber": "*555*"}  # most recordings'
        plan = Plan(trigram_numbers=frozenset({"dialed"}))
        blobs = sqliteblocks.read_page(
            conn, CCID, parse_query(params), plan, limit=5, after=None, region=None
        )
        ids = [decode(blob)["id"] for blob in blobs]
        assert ids == expected_ids(store, params)[:5]
        blocks = conn.execute("SELECT count(*) FROM recording_blocks").fetchone()[0]
        read = sum((last - first + 1) >> sqliteblocks.BLOCK_BITS for first, last in ranges)
        assert read < blocks / 4, (read, blocks)
    finally:
        store.close()


def test_block_bounds_hold_every_start_after_updates_and_deletes(tmp_path: Path) -> None:
    docs = recordings(200)
    store = open_loaded(tmp_path / "callrec.db", docs)
    try:
        # Move some recordings far earlier and later, delete others.
        for doc in docs[::7]:
            start = parse_instant(doc["startTime"], "s")
            store.upsert(CCID, [{**doc, "startTime": format_instant(start - 10**10)}])
        for doc in docs[3::11]:
            store.delete(CCID, doc["id"])
        assert_bounds_hold(store.path)
    finally:
        store.close()


def assert_bounds_hold(path: str) -> None:
    with sqlite3.connect(path) as conn:
        outside = conn.execute(
            "SELECT count(*) FROM recordings r LEFT JOIN recording_blocks b"
            " ON b.block = r.pk >> ? WHERE b.block IS NULL"
            " OR r.start_ms NOT BETWEEN b.min_start AND b.max_start",
            (sqliteblocks.BLOCK_BITS,),
        ).fetchone()[0]
        assert outside == 0


def test_schema_8_fills_the_blocks_of_recordings_stored_before(tmp_path: Path) -> None:
    path = tmp_path / "callrec.db"
    store = open_loaded(path, recordings(100))
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE recording_blocks")
        conn.execute("PRAGMA user_version = 7")
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.schema_version == SCHEMA_VERSION  # 8, and 9 after it
        # The migration's blocks are of 4,096 recordings: one block for these 100.
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT block, min_start, max_start FROM recording_blocks")
            ((block, low, high),) = rows.fetchall()
            first, last = conn.execute(
                "SELECT min(start_ms), max(start_ms) FROM recordings"
            ).fetchone()
        assert (block, low, high) == (0, first, last)
    finally:
        store.close()


def test_plans_figures_are_remembered_until_the_recordings_grow(tmp_path: Path) -> None:
    """A query paged through is counted once; once the recordings grew, it is counted again."""
    docs = recordings(400)
    store = open_loaded(tmp_path / "callrec.db", docs[:300])
    try:
        statements: list[str] = []
        store._read().set_trace_callback(statements.append)
        query = parse_query({"callerPhoneNumber": "1*"})  # a prefix: its range is counted
        pages = [store.search(CCID, query, limit=5) for _ in range(3)]
        counts = [s for s in statements if s.startswith("SELECT count(*)")]
        assert len(counts) == 1, statements
        assert pages[0] == pages[1] == pages[2]
        store.upsert(CCID, docs[300:])  # 300 -> 400 recordings: another generation
        statements.clear()
        first = [d["id"] for d in store.search(CCID, query, limit=5)]
        assert any(s.startswith("SELECT count(*)") for s in statements)
        assert first == expected_ids(store, {"callerPhoneNumber": "1*"})[:5]
    finally:
        store.close()


def test_blocks_read_candidates_by_pk_whatever_the_statistics_say(tmp_path: Path) -> None:
    """Sampled statistics once took the tenant for a few hundred rows: SQLite then walked the
    whole tenant in time order, testing each recording against the candidates (1.2 s at
    10M). Each block's statement looks the candidates up by pk, whatever the statistics."""
    store = open_loaded(tmp_path / "callrec.db", recordings())
    try:
        conn = store._read()
        conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'recordings'")
        conn.execute(
            "INSERT INTO sqlite_stat1 VALUES ('recordings', 'recordings_by_start_covering',"
            " '4598068 501 4 1 1 1 1')"
        )
        conn.execute("ANALYZE sqlite_schema")  # the statistics above, as if measured
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        query = parse_query({"callerPhoneNumber": "*555*"})
        plan = Plan(trigram_numbers=frozenset({"caller"}))
        pages = sqliteblocks.read_page(conn, CCID, query, plan, limit=5, after=None, region=None)
        conn.set_trace_callback(None)
        assert pages  # (exact pages: the tests above)
        reads = [s for s in statements if "caller_fts MATCH" in s]
        assert reads
        for sql in reads:
            steps = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "INTEGER PRIMARY KEY" in steps, steps
            assert "recordings_by_start_covering" not in steps, steps
    finally:
        store.close()
