"""Infix number patterns on PostgreSQL read one window of time at a time (``store/pgwindows``)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from callrec.demo import demo_recordings
from callrec.doccodec import decode
from callrec.ingest import prepare
from callrec.media.locations import Storages
from callrec.query import RecordingQuery, format_instant, parse_query
from callrec.store import SearchKey, open_store, pgwindows
from callrec.store.pgschema import SCHEMA_VERSION
from callrec.store.pgwindows import TimeStats, next_size, spanned, window_end
from callrec.store.postgres import PostgresStore
from pattern_cases import CCID, all_pages, expected_ids, queries, recordings


@pytest.fixture(autouse=True)
def windows_at_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few hundred recordings over years: far fewer per time bucket than windows need."""
    monkeypatch.setattr(pgwindows, "MIN_BUCKET_ROWS", 0)


def open_loaded(url: str, docs: list[dict[str, Any]]) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    for start in range(0, len(docs), 50):
        store.upsert(CCID, docs[start : start + 50])
    with store._conn() as conn:
        conn.execute("ANALYZE recordings")
    return store


@pytest.fixture(params=["in time order", "shuffled"])
def loaded(request: pytest.FixtureRequest, pg_url: str) -> Iterator[PostgresStore]:
    """A store whose recordings were written in the order they happened, or in none."""
    docs = recordings()
    if request.param == "shuffled":
        random.Random(3).shuffle(docs)
    store = open_loaded(pg_url, docs)
    try:
        yield store
    finally:
        store.close()


def time_stats(store: PostgresStore) -> TimeStats:
    with store._conn() as conn:
        return pgwindows.load_time_stats(conn)


def window_pages(store: PostgresStore, params: dict[str, str], limit: int) -> list[str]:
    """Every page through the windows themselves (whatever the store would choose)."""
    stats = time_stats(store)

    def read(query: RecordingQuery, after: SearchKey | None, limit: int) -> list[bytes]:
        with store._conn() as conn:
            return pgwindows.read_page(
                conn, stats, CCID, query, limit=limit, after=after, region=None
            )

    return all_pages(read, params, limit)


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_windows_give_the_reference_pages(loaded: PostgresStore, limit: int) -> None:
    """Exact whatever the order the table's rows were written in."""
    found = 0
    for params in queries(loaded):
        expected = expected_ids(loaded, params)
        assert window_pages(loaded, params, limit) == expected, params
        found += len(expected)
    assert found > 100  # the patterns are not trivial


def test_the_rest_after_the_longest_window_is_read_by_postgresql_s_plan(
    loaded: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgwindows, "MAX_TIME_BUCKETS", 3)
    statements = reads(monkeypatch)
    for params in queries(loaded):
        assert window_pages(loaded, params, 7) == expected_ids(loaded, params), params
    assert any("&&" not in sql for sql, _ in statements)  # some rest was read
    assert all(len(p[-4]) <= 3 for sql, p in statements if "&&" in sql)


def test_without_the_trigram_indexes_postgresql_s_plan_reads_the_page(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As during a load into an empty database, which drops them until its end."""
    store = open_loaded(pg_url, recordings(200))
    try:
        with store._conn() as conn:
            for name in pgwindows.INDEXES:
                conn.execute(f"DROP INDEX {name}".encode())
        statements = reads(monkeypatch)
        for params in queries(store):
            assert window_pages(store, params, 7) == expected_ids(store, params), params
        assert statements
        assert all("&&" not in sql for sql, _ in statements)
    finally:
        store.close()


def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    """The statements read_page sends for documents, with their parameters, from now on."""
    statements: list[tuple[str, list[Any]]] = []
    original = pgwindows._read

    def counted(conn: Any, sql: str, params: list[Any], *, prepare: bool) -> list[bytes]:
        statements.append((sql, params))
        return original(conn, sql, params, prepare=prepare)

    monkeypatch.setattr(pgwindows, "_read", counted)
    return statements


def window_reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The queries whose pages pgwindows.read_page reads, from now on."""
    pages: list[Any] = []
    original = pgwindows.read_page

    def counted(*args: Any, **kwargs: Any) -> list[bytes]:
        pages.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(pgwindows, "read_page", counted)
    return pages


def assert_searches_exact(store: PostgresStore, cases: list[dict[str, str]]) -> None:
    for params in cases:
        ids = [d["id"] for d in store.search(CCID, parse_query(params), limit=10_000)]
        assert ids == expected_ids(store, params), params


def test_search_reads_infix_patterns_by_windows(
    loaded: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = time_stats(loaded)
    assert len(stats.bounds) > 100  # the finer histogram (600 recordings, all sampled)
    pages = window_reads(monkeypatch)
    assert_searches_exact(loaded, queries(loaded))
    assert len(pages) == len(queries(loaded))
    # Not with an exact number (its own index gives the page in order), nor without infix.
    assert_searches_exact(
        loaded,
        [
            {"callerPhoneNumber": "*555*", "dialedPhoneNumber": "18005550199"},
            {"callerPhoneNumber": "1650*"},
            {"callerPhoneNumber": "*55"},
        ],
    )
    assert len(pages) == len(queries(loaded))


def test_recordings_at_the_edge_of_a_time_bucket_are_read_once(pg_url: str) -> None:
    """Windows end where time buckets do: a recording starting there is in the next one."""
    bucket = 1 << pgwindows.BUCKET_BITS
    storages = Storages({})
    docs = []
    for i, doc in enumerate(demo_recordings(60, seed=8, ccid=CCID, media=False)):
        start = (27_000 + i // 3) * bucket + (i % 3 - 1)  # just before, at, just after
        doc["startTime"] = format_instant(start)
        doc["stopTime"] = format_instant(start + 60_000)
        doc["callerPhoneNumber"] = "16505550123"
        docs.append(prepare(storages, doc, CCID))
    store = open_loaded(pg_url, docs)
    try:
        params = {"callerPhoneNumber": "*5550*"}
        expected = expected_ids(store, params)
        assert len(expected) == 60
        for limit in (1, 2, 3, 5):
            assert window_pages(store, params, limit) == expected, limit
    finally:
        store.close()


def test_a_prefix_or_suffix_is_read_by_windows_when_its_range_is_long(
    loaded: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgwindows, "COLLECT_UP_TO", 20)
    by_windows = []
    for pattern in ["1*", "+1*", "1650*", "*5", "*0199", "*00*99", "44*", "*zz"]:
        for column in ("callerPhoneNumber", "dialedPhoneNumber"):
            params = {column: pattern}
            query = parse_query(params)
            with loaded._conn() as conn:
                chosen = pgwindows.by_windows(conn, CCID, query)
            matches = len(expected_ids(loaded, params))
            if chosen:
                by_windows.append(params)
            else:  # the range counted holds every match, and more
                assert matches < 20, (params, matches)
            ids = [d["id"] for d in loaded.search(CCID, query, limit=7)]
            assert ids == expected_ids(loaded, params)[:7], params
    assert by_windows  # some ranges are long...
    assert len(by_windows) < 16  # ...not all


def test_a_page_of_a_common_pattern_reads_a_few_windows(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_loaded(pg_url, recordings())
    try:
        statements = reads(monkeypatch)
        params = {"dialedPhoneNumber": "*555*"}  # most recordings'
        stats = time_stats(store)
        with store._conn() as conn:
            blobs = pgwindows.read_page(
                conn, stats, CCID, parse_query(params), limit=5, after=None, region=None
            )
        assert [decode(blob)["id"] for blob in blobs] == expected_ids(store, params)[:5]
        assert all("&&" in sql for sql, _ in statements)  # no rest
        assert 1 <= len(statements) <= 3, statements
        # The windows cover a small part of the time the recordings span.
        covered = statements[-1][1][-2] - statements[0][1][-3]
        assert covered < (stats.bounds[-1] - stats.bounds[0]) / 4
    finally:
        store.close()


def test_windows_end_at_whole_time_buckets_and_grow_with_what_was_found() -> None:
    bucket = 1 << pgwindows.BUCKET_BITS
    stats = TimeStats(tuple(range(0, 100 * bucket + 1, bucket // 2)))  # 2 per time bucket
    far = 10**18
    assert window_end(stats, 0, 1, far) == bucket  # up to the next bound, in whole buckets
    assert window_end(stats, 0, 0.1, far) == bucket  # at least the time bucket of start
    assert window_end(stats, 0, 4, far) == 3 * bucket  # 4 halves, then the bucket of that time
    assert window_end(stats, bucket, 2, far) == 3 * bucket
    assert window_end(stats, 0, 4, bucket + 5) == bucket + 5  # never past the end
    assert window_end(stats, 0, 10**6, 7) == 7  # past the histogram: to the end
    assert window_end(TimeStats(()), 0, 1, 99) == 99  # no histogram: one window
    assert spanned(stats, 0, 3 * bucket) == 6
    assert spanned(stats, 0, bucket // 4) == pytest.approx(0.5)  # within a bucket: in proportion
    assert spanned(stats, -5 * bucket, -bucket) == 0.01  # before the histogram: next to nothing
    assert next_size(read=2, found=0, needed=100, size=2) == 8  # nothing yet: four times
    # 10 found in 4 buckets: 90 more need about 36, and some more...
    assert next_size(read=4, found=10, needed=90, size=4) == 16  # ...but at most 4 times
    assert next_size(read=40, found=50, needed=50, size=8) == pytest.approx(pgwindows.MARGIN * 40)


def test_schema_8_gives_the_trigram_indexes_their_time_bucket(pg_url: str) -> None:
    store = open_loaded(pg_url, recordings(50))
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in pgwindows.INDEXES:  # as schema 7 had them
            conn.execute(f"DROP INDEX {name}".encode())
        for column in ("caller", "dialed"):
            conn.execute(
                f"CREATE INDEX recordings_{column}_trgm ON recordings"
                f" USING gin ({column} gin_trgm_ops)".encode()
            )
        conn.execute("ALTER TABLE recordings ALTER COLUMN start_ms SET STATISTICS -1")
        for table in ("recordings", "users"):  # schema 9's
            conn.execute(f"DROP TRIGGER {table}_changed ON {table}".encode())
        conn.execute("DROP FUNCTION callrec_changed()")
        conn.execute("DROP INDEX recordings_by_id")  # schema 11's, the key before
        conn.execute("ALTER TABLE recordings ADD CONSTRAINT recordings_pkey PRIMARY KEY (ccid, id)")
        conn.execute("DELETE FROM schema_migrations WHERE version >= 8")
    store = open_store(pg_url)
    try:
        assert store.schema_version == SCHEMA_VERSION
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(
                "SELECT a.attstattarget FROM pg_attribute a"
                " WHERE a.attrelid = 'recordings'::regclass AND a.attname = 'start_ms'"
            ).fetchone()
            assert row == (pgwindows.STATISTICS,)
            indexes = dict(
                conn.execute(
                    "SELECT indexname, indexdef FROM pg_indexes"
                    " WHERE schemaname = current_schema() AND indexdef LIKE '%gin_trgm_ops%'"
                ).fetchall()
            )
        assert set(indexes) == set(pgwindows.INDEXES)
        assert all(f"(start_ms >> {pgwindows.BUCKET_BITS})" in ddl for ddl in indexes.values())
        query = parse_query({"dialedPhoneNumber": "*555*"})
        ids = [d["id"] for d in store.search(CCID, query, limit=1000)]
        assert ids
        assert ids == expected_ids(store, {"dialedPhoneNumber": "*555*"})
    finally:
        store.close()


def test_windows_and_names_ranges_are_planned_once_per_connection(pg_url: str) -> None:
    """Not for each of a statement's first five runs, as PostgreSQL would for its values."""
    store = open_loaded(pg_url, recordings(200))
    try:
        with store._pool.connection() as conn:  # the pool's only connection so far
            conn.execute("DEALLOCATE ALL")
        for _ in range(3):
            for params in [
                {"dialedPhoneNumber": "*555*"},
                {"userName": "alice* OR bob* OR carol*"},
            ]:
                ids = [d["id"] for d in store.search(CCID, parse_query(params), limit=5)]
                assert ids == expected_ids(store, params)[:5]
        with store._pool.connection() as conn:
            plans = conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%&&%' OR statement LIKE '%UNION ALL%'"
            ).fetchall()
        assert len(plans) == 2, plans
        assert all(generic >= 3 and custom == 0 for _, generic, custom in plans), plans
    finally:
        store.close()


def test_windows_wait_for_enough_recordings_per_time_bucket(
    loaded: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = time_stats(loaded)
    assert stats.rows == 600
    assert stats.worth_it  # with no least number (this module's fixture)
    monkeypatch.setattr(pgwindows, "MIN_BUCKET_ROWS", 4096)
    assert not stats.worth_it
    pages = window_reads(monkeypatch)
    assert_searches_exact(loaded, queries(loaded))
    assert not pages
    bucket = 1 << pgwindows.BUCKET_BITS
    assert TimeStats((0, 10 * bucket - 1), rows=40960).worth_it  # 4,096 in each of 10
    assert not TimeStats((0, 10 * bucket - 1), rows=40950).worth_it
    assert not TimeStats((), rows=10**9).worth_it  # no histogram yet
