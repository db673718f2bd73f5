"""Number patterns on PostgreSQL: trigram candidates one window of time at a time.

An infix pattern (``*4668*``) finds its candidates in a number's pg_trgm GIN index, and
PostgreSQL reads a table row per candidate to check it and sort it: at 10 million recordings
a pattern matching thousands read as many table rows (15-120 ms) for a page of 100, and the
trigrams of a four-digit pattern are each in about 1% of the numbers, so reading them whole
costs milliseconds whatever the pattern matches. A prefix or a suffix has a B-tree range of
its own, but one of tens of thousands of numbers is as many entries to sort.

The trigram indexes therefore carry a second key, the recording's time bucket (``start_ms >>
BUCKET_BITS``, about 37 hours). A window's statement asks for the pattern's trigrams AND one
of the window's buckets: the GIN index intersects them itself, reading the trigrams' entries
of those buckets only, and a table row is read per candidate of the window.

Windows follow each other from the first recording the page may hold (at or after the query's
``startTime`` and the cursor), cut at whole time buckets and sized in buckets of PostgreSQL's
histogram of ``start_ms`` (each of its ``STATISTICS`` holds about as many recordings): the
first spans ``FIRST_BUCKETS``, each next one what the matches found so far say the page still
needs, and some more (at most four times what was read). Each gives its matches in (start_ms,
id) order and they do not overlap, so the page is their matches in turn until it is full:
exact, whatever order the rows were written in. What is left once a window would span more
than ``MAX_TIME_BUCKETS`` is read by PostgreSQL's own plan.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import psycopg

from callrec.query import RecordingQuery
from callrec.store import SearchKey
from callrec.store.sqlsearch import POSTGRES, Plan, search_where

BUCKET_BITS = 27  # time buckets of 2**27 ms (about 37 hours) in the trigram indexes
BUCKET = f"ARRAY[start_ms >> {BUCKET_BITS}]"  # the indexes' second key, as an expression
INDEXES = {
    f"recordings_{column}_trgm_by_time": f"CREATE INDEX IF NOT EXISTS recordings_{column}"
    f"_trgm_by_time ON recordings USING gin ({column} gin_trgm_ops, ({BUCKET}))"
    for column in ("caller", "dialed")
}
FIRST_BUCKETS = 0.5  # histogram buckets of the first window (then sized by the matches found)
MARGIN = 1.25  # a next window is this much larger than the matches found so far say it needs
MAX_TIME_BUCKETS = 512  # a window of more time buckets: the rest is read by PostgreSQL's plan
COLLECT_UP_TO = 2000  # entries of a prefix's or suffix's range from which windows answer it
STATISTICS = 1000  # histogram buckets of start_ms (PostgreSQL's default is 100)
MIN_BUCKET_ROWS = 4096  # recordings per time bucket, on average, from which windows are used


@dataclass(frozen=True, slots=True)
class TimeStats:
    """``start_ms`` as PostgreSQL's statistics see it: about as many recordings between each
    two bounds of the histogram; and how many recordings there are."""

    bounds: tuple[int, ...]
    rows: float = 0.0

    @property
    def worth_it(self) -> bool:
        """Whether a time bucket holds enough recordings, on average, for windows to pay:
        each bucket of a window is an index entry to start reading, while the whole trigram
        lists cost in proportion to every recording (at 100,000 recordings over three
        years, windows took an infix class from within 10 ms p95 to 12.6)."""
        if len(self.bounds) < 2:
            return False
        buckets = (self.bounds[-1] >> BUCKET_BITS) - (self.bounds[0] >> BUCKET_BITS) + 1
        return self.rows / buckets >= MIN_BUCKET_ROWS


NO_STATS = TimeStats(())


def load_time_stats(conn: psycopg.Connection[Any]) -> TimeStats:
    row = conn.execute(
        "SELECT (SELECT histogram_bounds::text::bigint[] FROM pg_stats"
        " WHERE schemaname = current_schema() AND tablename = 'recordings'"
        " AND attname = 'start_ms'),"
        " (SELECT reltuples FROM pg_class WHERE oid = 'recordings'::regclass)"
    ).fetchone()
    if row is None or row[0] is None:
        return NO_STATS
    return TimeStats(tuple(row[0]), max(0.0, float(row[1] or 0.0)))


def by_windows(conn: psycopg.Connection[Any], ccid: str, query: RecordingQuery) -> bool:
    """Whether windows answer the query: some number is a pattern the trigrams answer and no
    number is exact (its own index then gives the page in order). An infix pattern always
    (nothing else finds its candidates); a prefix or a suffix when its range of the number's
    B-tree holds at least ``COLLECT_UP_TO`` entries (counted that far): fewer are cheaper
    collected from that range and sorted."""
    patterns = [(c, p) for c, p in (("caller", query.caller), ("dialed", query.dialed)) if p]
    patterns = [(c, p) for c, p in patterns if p != "*"]
    if not patterns or any("*" not in p for _, p in patterns):
        return False
    if any(_infix(p) for _, p in patterns):
        return True
    for column, pattern in patterns:
        # The range of the literal prefix (of the reversed number, for a suffix), as bounds
        # alone: a LIKE would let PostgreSQL count from the trigram index, all of it.
        if not pattern.startswith("*"):
            literal = pattern.split("*")[0]
        else:
            column, literal = f"{column}_rev", pattern.split("*")[-1][::-1]
        if not literal:
            continue
        row = conn.execute(
            f"SELECT count(*) FROM (SELECT FROM recordings WHERE ccid = %s AND {column} >= %s"
            f" AND {column} < %s LIMIT %s) AS s".encode(),
            [ccid, literal, literal[:-1] + chr(ord(literal[-1]) + 1), COLLECT_UP_TO],
            prepare=True,  # one plan whatever the range: planning took 1.2 ms at 10M
        ).fetchone()
        if row is not None and row[0] >= COLLECT_UP_TO:
            return True
    return False


def _infix(pattern: str) -> bool:
    return (
        pattern.startswith("*")
        and pattern.endswith("*")
        and any(len(run) >= 3 for run in pattern.split("*"))
    )


def window_end(stats: TimeStats, start: int, size: float, end: int) -> int:
    """Where a window from ``start`` spanning about ``size`` buckets of the histogram ends:
    at the end of a time bucket, or at ``end``."""
    bounds = stats.bounds
    place = _place(bounds, start) + size
    if place >= len(bounds) - 1:
        return end  # past the histogram (or none): to the end
    i = int(place)
    time = bounds[i] + int((place - i) * (bounds[i + 1] - bounds[i]))
    return min(end, ((time >> BUCKET_BITS) + 1) << BUCKET_BITS)


def spanned(stats: TimeStats, start: int, before: int) -> float:
    """About how many buckets of the histogram lie between ``start`` and ``before``."""
    return max(0.01, _place(stats.bounds, before) - _place(stats.bounds, start))


def _place(bounds: tuple[int, ...], time: int) -> float:
    """Where ``time`` falls in the histogram, in buckets from its first bound (within a
    bucket, in proportion to the time)."""
    i = bisect.bisect_right(bounds, time)
    if i == 0:
        return 0.0
    if i >= len(bounds):
        return float(len(bounds) - 1)
    return i - 1 + (time - bounds[i - 1]) / (bounds[i] - bounds[i - 1])


def next_size(read: float, found: int, needed: int, size: float) -> float:
    """The next window's size, in buckets of the histogram: enough for the matches still
    needed at the rate found so far (and some more), but at most four times what was read
    (a rate from a few matches can be far off); four times the last one while nothing
    matched."""
    if found == 0:
        return size * 4
    return min(MARGIN * needed * read / found, 4 * read)


def _buckets(start: int, before: int) -> list[int]:
    return list(range(start >> BUCKET_BITS, ((before - 1) >> BUCKET_BITS) + 1))


# Number patterns as LIKE on the numbers themselves (a suffix too, not on the reversed
# number): the trigram indexes answer them all.
_PLAIN = Plan(dense_numbers=frozenset({"caller", "dialed"}))


def read_page(
    conn: psycopg.Connection[Any],
    stats: TimeStats,
    ccid: str,
    query: RecordingQuery,
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
) -> list[bytes]:
    """The stored documents of one page, window after window."""
    where, params = search_where(POSTGRES, ccid, query, after=after, region=region, plan=_PLAIN)
    page: list[bytes] = []
    with conn.transaction():
        # One snapshot for every window. The time index (ccid, start_ms, id) would answer a
        # window by reading a table row per recording in it: the windows leave it out of
        # reach (ccid || '', a no-op on the value), and a plan of their own, made once per
        # connection, takes the trigrams and the buckets from the GIN index (planning each
        # window took 1.5-3.5 ms at 10M).
        conn.execute(
            b"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;"
            b" SET LOCAL plan_cache_mode = force_generic_plan"
        )
        span = _span(conn, ccid, query, after)
        if span is None:
            return []
        by_window = (
            "SELECT r.document FROM recordings r WHERE "
            + where.replace("r.ccid = ?", "(r.ccid || '') = ?", 1)
            + f" AND ARRAY[r.start_ms >> {BUCKET_BITS}] && ?::bigint[]"
            " AND r.start_ms >= ? AND r.start_ms < ?"
            " ORDER BY r.start_ms, r.id LIMIT ?"
        )
        start, last, indexed = span
        end = 1 + (last if query.end_before is None else min(last, query.end_before))
        size, read = float(FIRST_BUCKETS), 0.0
        while indexed and start < end:
            before = window_end(stats, start, size, end)
            buckets = _buckets(start, before)
            if len(buckets) > MAX_TIME_BUCKETS:
                break
            bounds = [buckets, start, before, limit - len(page)]
            page += _read(conn, by_window, [*params, *bounds], prepare=True)
            if len(page) == limit:
                return page
            read += spanned(stats, start, before)
            size = next_size(read, len(page), limit - len(page), size)
            start = before
        if start >= end:
            return page  # every recording the page may hold was in a window
        conn.execute("SET LOCAL plan_cache_mode = auto")
        rest = f"SELECT r.document FROM recordings r WHERE {where} AND r.start_ms >= ?"
        params = [*params, start]
        rest += " ORDER BY r.start_ms, r.id LIMIT ?"
        page += _read(conn, rest, [*params, limit - len(page)], prepare=False)
    return page


def _span(
    conn: psycopg.Connection[Any], ccid: str, query: RecordingQuery, after: SearchKey | None
) -> tuple[int, int, bool] | None:
    """The starts of the contact center's first recording the page may hold, whatever its
    numbers, and of its last recording (an entry of the time index each); and whether the
    trigram indexes are there (a load into an empty database drops them until its end)."""
    first = "SELECT start_ms FROM recordings WHERE ccid = %s"
    params: list[Any] = [ccid]
    if query.start_from is not None:
        first += " AND start_ms >= %s"
        params.append(query.start_from)
    if after is not None:
        first += " AND (start_ms, id) > (%s, %s)"
        params += list(after)
    row = conn.execute(
        f"SELECT ({first} ORDER BY start_ms, id LIMIT 1),"
        " (SELECT max(start_ms) FROM recordings WHERE ccid = %s),"
        " (SELECT count(*) FROM pg_class WHERE relname = ANY(%s)"
        " AND relnamespace = current_schema()::regnamespace)".encode(),
        [*params, ccid, list(INDEXES)],
        prepare=True,
    ).fetchone()
    assert row is not None
    return None if row[0] is None else (int(row[0]), int(row[1]), row[2] == len(INDEXES))


def _read(
    conn: psycopg.Connection[Any], sql: str, params: list[Any], *, prepare: bool
) -> list[bytes]:
    """One statement's documents."""
    statement = sql.replace("?", "%s").encode()
    return [row[0] for row in conn.execute(statement, params, prepare=prepare)]
