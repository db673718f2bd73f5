"""Infix number patterns on PostgreSQL read one window of time at a time (``store/pgwindows``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from callrec.demo import demo_recordings
from callrec.ingest import prepare
from callrec.media.locations import Storages
from callrec.query import format_instant, matches, parse_instant, parse_query
from callrec.store import open_store, pgwindows, search_key
from callrec.store.doccodec import decode
from callrec.store.pgwindows import TimeStats, windows
from callrec.store.postgres import PostgresStore

CCID = "cc1"
PATTERNS = ["*4668*", "*555*", "*650*", "*800*55*", "*123*", "*ALICE*", "*0000*"]


def recordings(count: int = 600) -> list[dict[str, Any]]:
    storages = Storages({})
    docs = demo_recordings(count, seed=5, ccid=CCID, media=False)
    return [prepare(storages, doc, CCID) for doc in docs]


def open_loaded(url: str, docs: list[dict[str, Any]]) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    for start in range(0, len(docs), 50):
        store.upsert(CCID, docs[start : start + 50])
    with store._conn() as conn:
        conn.execute("ANALYZE recordings")
    return store


@pytest.fixture(params=["in time order", "shuffled"])
def loaded(request: pytest.FixtureRequest, pg_url: str) -> Iterator[tuple[PostgresStore, bool]]:
    """A store, and whether its recordings were written in the order they happened."""
    docs = recordings()
    in_order = request.param == "in time order"
    if not in_order:
        random.Random(3).shuffle(docs)
    store = open_loaded(pg_url, docs)
    try:
        yield store, in_order
    finally:
        store.close()


def expected_ids(store: PostgresStore, params: dict[str, str]) -> list[str]:
    everything = store.search(CCID, parse_query({"startTime": "0"}), limit=100_000)
    query = parse_query(params)
    return [d["id"] for d in sorted((d for d in everything if matches(query, d)), key=search_key)]


def time_stats(store: PostgresStore) -> TimeStats:
    with store._conn() as conn:
        return pgwindows.load_time_stats(conn)


def window_pages(store: PostgresStore, params: dict[str, str], limit: int) -> list[str]:
    """Every page through the windows themselves (whatever the store would choose)."""
    query, after, ids = parse_query(params), None, []
    stats = time_stats(store)
    while True:
        with store._conn() as conn:
            blobs = pgwindows.read_page(
                conn, stats, CCID, query, limit=limit, after=after, region=None
            )
        docs = [decode(blob) for blob in blobs]
        ids += [d["id"] for d in docs]
        if len(docs) < limit:
            return ids
        after = search_key(docs[-1])


def queries(store: PostgresStore) -> list[dict[str, str]]:
    rng = random.Random(9)
    starts = [
        d["startTime"] for d in store.search(CCID, parse_query({"startTime": "0"}), limit=1000)
    ]
    out = []
    for pattern in PATTERNS:
        out.append({"callerPhoneNumber": pattern})
        out.append({"dialedPhoneNumber": pattern, "callerPhoneNumber": "*1*"})
        low, high = sorted(parse_instant(rng.choice(starts), "s") for _ in range(2))
        out.append(
            {
                "callerPhoneNumber": pattern,
                "startTime": format_instant(low),
                "endTime": format_instant(high),
            }
        )
    return out


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_windows_give_the_reference_pages(
    loaded: tuple[PostgresStore, bool], limit: int
) -> None:
    """Exact whether the table is in time order or not (then each window reads more)."""
    store, _ = loaded
    found = 0
    for params in queries(store):
        expected = expected_ids(store, params)
        assert window_pages(store, params, limit) == expected, params
        found += len(expected)
    assert found > 100  # the patterns are not trivial


def test_search_reads_by_windows_only_when_the_table_is_in_time_order(
    loaded: tuple[PostgresStore, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, in_order = loaded
    stats = time_stats(store)
    assert stats.in_order == in_order, stats.correlation
    assert len(stats.bounds) > 100  # the finer histogram (600 recordings, all sampled)
    reads = []
    original = pgwindows.read_page

    def counted(*args: Any, **kwargs: Any) -> list[bytes]:
        reads.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(pgwindows, "read_page", counted)
    for params in queries(store):
        ids = [d["id"] for d in store.search(CCID, parse_query(params), limit=10_000)]
        assert ids == expected_ids(store, params), params
    assert len(reads) == (len(queries(store)) if in_order else 0)


def test_a_page_ends_after_the_first_windows_when_the_table_is_in_time_order(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_loaded(pg_url, recordings())
    try:
        read: list[list[Any]] = []
        original = pgwindows._window

        def counted(conn: Any, sql: str, params: list[Any]) -> list[bytes]:
            read.append(params[-3:])
            return original(conn, sql, params)

        monkeypatch.setattr(pgwindows, "_window", counted)
        params = {"dialedPhoneNumber": "*555*"}  # most recordings'
        stats = time_stats(store)
        with store._conn() as conn:
            blobs = pgwindows.read_page(
                conn, stats, CCID, parse_query(params), limit=5, after=None, region=None
            )
        assert [decode(blob)["id"] for blob in blobs] == expected_ids(store, params)[:5]
        # Windows of 2 then 8 buckets of the histogram: 10 of its 600 recordings' starts.
        assert len(read) < len(windows(stats, None, None)), read
        covered = [s for s in stats.bounds if s < read[-1][1]]
        assert len(covered) < len(stats.bounds) / 4, (len(covered), len(stats.bounds))
    finally:
        store.close()


def test_windows_cover_the_range_in_order_and_grow() -> None:
    stats = TimeStats(tuple(range(0, 1001, 10)), 1.0)  # 100 buckets of 10 ms
    found = windows(stats, None, None)
    assert found[0] == (None, 20)
    assert [w[1] - w[0] for w in found[1:-1] if w[0] is not None] == [80, 320]
    assert found[-1] == (420, 2**63 - 1)
    # From a bound within the histogram, to one before its end: the last window stops there.
    assert windows(stats, 15, 200) == [(15, 40), (40, 120), (120, 201)]
    # Before and after the histogram.
    assert windows(stats, -500, -100) == [(-500, -99)]
    assert windows(stats, 5000, None) == [(5000, 2**63 - 1)]
    for low, high in [(None, None), (15, 200), (999, 1000), (0, 0)]:
        found = windows(stats, low, high)
        assert all(a[1] == b[0] for a, b in zip(found, found[1:], strict=False))
        assert found[-1][1] == (2**63 - 1 if high is None else high + 1)


def test_schema_8_adds_the_range_index_and_the_finer_histogram(pg_url: str) -> None:
    store = open_loaded(pg_url, recordings(50))
    store.close()
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP INDEX recordings_by_start_range")
        conn.execute("ALTER TABLE recordings ALTER COLUMN start_ms SET STATISTICS -1")
        conn.execute("DELETE FROM schema_migrations WHERE version = 8")
    store = open_store(pg_url)
    try:
        assert store.schema_version == 8
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT a.attstattarget FROM pg_attribute a"
                " WHERE a.attrelid = 'recordings'::regclass AND a.attname = 'start_ms'"
            ).fetchone()
            assert row == (pgwindows.STATISTICS,)
            kind = conn.execute(
                "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                " WHERE c.oid = 'recordings_by_start_range'::regclass"
            ).fetchone()
            assert kind == ("brin",)
    finally:
        store.close()
