"""Infix number patterns on SQLite: trigram candidates read in blocks, stopped at the page.

An infix pattern (``*4668*``) finds its candidates in a number's FTS5 trigram index, by
recording pk. The page is the first matches in (startTime, id) order, so collecting and sorting
every candidate costs a row read each: tens of milliseconds when thousands match among
millions. ``recording_blocks`` keeps, per block of 4,096 consecutive pks, the earliest and the
latest start of the recordings in it (widened as recordings are written, never narrowed, so
they bound the block's starts whatever was changed or deleted since).

Blocks are read in order of their earliest start, several at a time, each read taking the
best matches of its pk ranges. Once the page is full and the next block's earliest start is
later than the page's last match, no unread recording can enter the page. Recordings are
mostly written in the order their calls happen, so blocks hardly overlap in time and the
page ends after the first few blocks. Where they overlap, the read goes on further, up to
every block: still exact, then no cheaper than collecting every candidate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from callrec.query import RecordingQuery
from callrec.store import SearchKey
from callrec.store.sqlitenames import documents
from callrec.store.sqlsearch import SQLITE, Plan, search_where, trigram_match

BLOCK_BITS = 12  # 4,096 recordings per block: 2,442 blocks at 10 million
FIRST_BLOCKS = 2  # blocks read by the first statement; each next one reads four times as many
MAX_RUNS = 8  # ranges of pks per read; more are read as the one range that spans them
IN_ORDER = 2.0  # at most this overlap (below): candidates are read by blocks, uncounted

UPDATE_BLOCKS = (
    "INSERT INTO recording_blocks (block, min_start, max_start) VALUES (?, ?, ?)"
    " ON CONFLICT (block) DO UPDATE SET min_start = min(min_start, excluded.min_start),"
    " max_start = max(max_start, excluded.max_start)"
)


def block_bounds(starts: dict[int, int]) -> list[tuple[int, int, int]]:
    """``(block, earliest, latest)`` of the recordings written, keyed by pk: what to widen."""
    bounds: dict[int, tuple[int, int]] = {}
    for pk, start in starts.items():
        block = pk >> BLOCK_BITS
        low, high = bounds.get(block, (start, start))
        bounds[block] = (min(low, start), max(high, start))
    return [(block, low, high) for block, (low, high) in bounds.items()]


def has_infix(query: RecordingQuery) -> bool:
    """Whether the query has a number pattern with trigram candidates. When the recordings
    were written in about the order they happened (``overlap`` up to ``IN_ORDER``), they
    are read by blocks, whatever their number, and not counted first."""
    return any(
        pattern is not None and trigram_match(pattern) is not None
        for pattern in (query.caller, query.dialed)
    )


def overlap(conn: sqlite3.Connection) -> float:
    """How many blocks a moment of time falls in, on average: about 1 when recordings were
    written in the order they happened; the number of blocks when in no order at all."""
    row = conn.execute(
        "SELECT sum(max_start - min_start + 1), max(max_start) - min(min_start) + 1"
        " FROM recording_blocks"
    ).fetchone()
    return float(row[0] / row[1]) if row and row[0] else 1.0


def read_page(
    conn: sqlite3.Connection,
    ccid: str,
    query: RecordingQuery,
    plan: Plan,
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
) -> list[bytes]:
    """The stored documents of one page, for a plan with trigram candidates."""
    conn.execute("BEGIN")  # one snapshot for the bounds, the candidates and the documents
    try:
        found: dict[int, tuple[int, str, int]] = {}  # by pk: a block may be read twice
        page: list[tuple[int, str, int]] = []
        blocks = _candidate_blocks(conn, query, after)  # read as far as needed
        batch, count = blocks.fetchmany(FIRST_BLOCKS + 1), FIRST_BLOCKS
        while batch:
            following = batch[count:]  # the next block's start, or none left
            for first, last in _runs(sorted(block for _, block in batch[:count])):
                for match in _best(conn, ccid, query, plan, after, region, limit, (first, last)):
                    found[match[2]] = match
            page = sorted(found.values())[:limit]
            found = {match[2]: match for match in page}
            if len(page) == limit and following and following[0][0] > page[-1][0]:
                break  # every unread recording starts after the page's last
            count *= 4
            batch = following + blocks.fetchmany(count + 1 - len(following))
        blocks.close()
        docs = documents(conn, [pk for _, _, pk in page])
    finally:
        conn.execute("COMMIT")
    return docs


def _candidate_blocks(
    conn: sqlite3.Connection, query: RecordingQuery, after: SearchKey | None
) -> sqlite3.Cursor:
    """``(earliest start, block)`` of the blocks that may hold a recording of the page, in
    that order: those whose starts reach the window and the cursor."""
    low = max(
        -(2**63) if query.start_from is None else query.start_from,
        -(2**63) if after is None else after[0],
    )
    high = 2**63 - 1 if query.end_before is None else query.end_before
    return conn.execute(
        "SELECT min_start, block FROM recording_blocks"
        " WHERE max_start >= ? AND min_start <= ? ORDER BY min_start, block",
        (low, high),
    )


def _runs(blocks: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted blocks as ranges of pks (first, last), consecutive blocks joined."""
    runs: list[list[int]] = []
    for block in blocks:
        if runs and runs[-1][1] == block - 1:
            runs[-1][1] = block
        else:
            runs.append([block, block])
    if len(runs) > MAX_RUNS:  # scattered blocks: one range over them all, read once
        runs = [[runs[0][0], runs[-1][1]]]
    return [(first << BLOCK_BITS, ((last + 1) << BLOCK_BITS) - 1) for first, last in runs]


def _best(
    conn: sqlite3.Connection,
    ccid: str,
    query: RecordingQuery,
    plan: Plan,
    after: SearchKey | None,
    region: str | None,
    limit: int,
    rows: tuple[int, int],
) -> list[tuple[int, str, int]]:
    """The first ``limit`` matches among the candidates with pks in ``rows``."""
    where, params = search_where(
        SQLITE, ccid, query, after=after, region=region, plan=plan, trigram_rows=rows
    )
    # By pk from the candidates, whatever the statistics say: sampled ones (``optimize``) once
    # took a tenant for a few hundred rows, and SQLite walked the whole tenant in time order
    # instead, testing each recording against the candidates (1.2 s at 10M instead of 1 ms).
    sql = f"SELECT r.start_ms, r.id, r.pk FROM recordings r NOT INDEXED WHERE {where}"
    found: list[Any] = conn.execute(
        f"{sql} ORDER BY r.start_ms, r.id LIMIT ?", [*params, limit]
    ).fetchall()
    return found
