"""Infix number patterns on PostgreSQL: trigram candidates one window of time at a time.

An infix pattern (``*4668*``) finds its candidates in a number's pg_trgm GIN index, and
PostgreSQL reads a table row per candidate to check it: at 10 million recordings a pattern
matching thousands read as many table pages (85-117 ms) to sort them and keep the first
100, and walking the time order instead reads a table row per recording until the page is
full. ``recordings_by_start_range`` is a BRIN index of ``start_ms``: per range of table
pages, their earliest and latest start. A window's statement ANDs the trigram candidates
with the page ranges whose starts reach the window, so only the window's candidates are
read.

Windows follow each other from the page's first possible start (the query's ``startTime``
or the cursor), sized by PostgreSQL's histogram of ``start_ms`` (each bucket holds about as
many recordings): the first spans ``FIRST_BUCKETS``, each next one four times as many. Each
gives its matches in (start_ms, id) order, and the windows do not overlap, so the page is
their matches in turn until it is full: exact, whatever the order rows were written in. That
order decides the cost: recordings are mostly written in the order their calls happen, which
PostgreSQL's statistics show as the correlation of ``start_ms`` with the rows' places in the
table. Below ``IN_ORDER``, page ranges hold any start and windows are not used.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import psycopg

from callrec.query import RecordingQuery
from callrec.store import SearchKey
from callrec.store.sqlsearch import POSTGRES, Plan, search_where

FIRST_BUCKETS = 2  # histogram buckets of the first window; each next window has four times more
IN_ORDER = 0.9  # least correlation of start_ms with the table's order for windows to pay
STATISTICS = 1000  # histogram buckets of start_ms (PostgreSQL's default is 100)
INDEX = (
    "CREATE INDEX recordings_by_start_range ON recordings USING brin (start_ms)"
    " WITH (pages_per_range = 16, autosummarize = on)"
)


@dataclass(frozen=True, slots=True)
class TimeStats:
    """``start_ms`` as PostgreSQL's statistics see it."""

    bounds: tuple[int, ...]  # the histogram: about as many recordings between each two
    correlation: float  # of start_ms with the rows' order in the table, -1 to 1

    @property
    def in_order(self) -> bool:
        return self.correlation >= IN_ORDER and len(self.bounds) > 2


NO_STATS = TimeStats((), 0.0)


def load_time_stats(conn: psycopg.Connection[Any]) -> TimeStats:
    row = conn.execute(
        "SELECT histogram_bounds::text::bigint[], correlation FROM pg_stats"
        " WHERE schemaname = current_schema() AND tablename = 'recordings'"
        " AND attname = 'start_ms'"
    ).fetchone()
    if row is None or row[0] is None or row[1] is None:
        return NO_STATS
    return TimeStats(tuple(row[0]), float(row[1]))


def has_infix(query: RecordingQuery) -> bool:
    """Whether a number is an infix pattern with a literal run of three (trigrams find its
    candidates) and no number is exact (its own index then gives the page in order)."""
    patterns = [p for p in (query.caller, query.dialed) if p is not None and p != "*"]
    return any(_infix(p) for p in patterns) and all("*" in p for p in patterns)


def _infix(pattern: str) -> bool:
    return (
        pattern.startswith("*")
        and pattern.endswith("*")
        and any(len(run) >= 3 for run in pattern.split("*"))
    )


def windows(stats: TimeStats, low: int | None, high: int | None) -> list[tuple[int | None, int]]:
    """``(from, before)`` of the windows between ``low`` and ``high`` (inclusive, None for no
    bound), in order; the last one's ``before`` is past ``high``."""
    end = (2**63 - 1) if high is None else high + 1
    bounds = stats.bounds
    place = 0 if low is None else bisect.bisect_right(bounds, low)
    found: list[tuple[int | None, int]] = []
    start, buckets = low, FIRST_BUCKETS
    while True:
        place += buckets
        if place >= len(bounds) - 1 or bounds[place] >= end:
            found.append((start, end))
            return found
        found.append((start, bounds[place]))
        start, buckets = bounds[place], buckets * 4


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
    where, params = search_where(POSTGRES, ccid, query, after=after, region=region, plan=Plan())
    # The time index (ccid, start_ms, id) would answer a window by reading a table row per
    # recording in it: its ccid is left out of reach (a no-op on the value), so the window is
    # the BRIN index's, ANDed with the trigram candidates.
    where = where.replace("r.ccid = ?", "(r.ccid || '') = ?", 1)
    sql = (
        f"SELECT r.document FROM recordings r WHERE {where}"
        " AND r.start_ms >= ? AND r.start_ms < ? ORDER BY r.start_ms, r.id LIMIT ?"
    ).replace("?", "%s")
    low = _low(query, after)
    page: list[bytes] = []
    with conn.transaction():  # one snapshot for every window
        for start, before in windows(stats, low, query.end_before):
            bounds = [-(2**63) if start is None else start, before, limit - len(page)]
            page += _window(conn, sql, [*params, *bounds])
            if len(page) == limit:
                break
    return page


def _window(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> list[bytes]:
    """One window's matches, up to what the page still needs."""
    # Planned with its values: how many candidates a pattern has varies a thousandfold.
    return [row[0] for row in conn.execute(sql.encode(), params, prepare=False)]


def _low(query: RecordingQuery, after: SearchKey | None) -> int | None:
    starts = [s for s in (query.start_from, None if after is None else after[0]) if s is not None]
    return max(starts) if starts else None
