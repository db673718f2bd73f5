"""userName search on SQLite: the branches of ``store.names`` read and merged in process.

Each branch is a range of ``recording_names`` keyed ``(ccid, name, start_ms, pk)``, read in
(startTime, id) order: the index gives startTime order, and the few entries that start in
the same millisecond are put in id order as they are read (SQLite sorts just each run of
equal keys). The time window and the cursor are bounds of the range. SQLite runs in the
process, so the branches are merged in Python, each read in chunks (each after the last entry
read) only as far as the page needs, and the page's documents are then read by key. No sort
of the matches, no set of them, however common the names.

* AND: the driver's range, filtered by the signature, then by key probes for the other exact
  names (``name_dictionary`` counts every name's entries exactly, so the rarest term drives);
* wildcards: expanded through ``name_dictionary``; as a filter, a ``GLOB`` among the
  recording's names;
* numbers, region, endTime: checked on each entry's recording, unless a number is rarer
  than the names (``number_drives``): then the generic plan of ``sqlsearch`` starts from the
  number's index and checks the names per candidate.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from callrec.query import RecordingQuery, to_glob
from callrec.store import SearchKey, names
from callrec.store.names import Branch, NamePlan, plan_names, signature_filter, wildcards
from callrec.store.sqlsearch import SQLITE, CountUpTo, _number, count_number

_BEFORE_ALL = -(2**63)  # a start_ms before any: "from the range's beginning"
_FIRST_CHUNK = 8  # entries first read of each branch (at least; the page's share of it)


@dataclass(frozen=True, slots=True)
class DictionaryCounts:
    """Exact entries per name, from ``name_dictionary``."""

    entries: dict[str, int]
    recordings: float

    def rows(self, found: Iterable[str]) -> float:
        return float(sum(self.entries.get(name, 0) for name in found))


def plan(
    conn: sqlite3.Connection,
    ccid: str,
    user: tuple[tuple[str, ...], ...],
    limit: int,
    recordings: int,
) -> NamePlan:
    """Wildcards expanded and every name counted from the dictionary, then planned."""
    expanded: dict[str, tuple[str, ...]] = {}
    entries: dict[str, int] = {}
    for pattern in wildcards(user):
        rows = conn.execute(
            "SELECT name, entries FROM name_dictionary WHERE ccid = ? AND name GLOB ?"
            " AND entries > 0 LIMIT ?",
            (ccid, to_glob(pattern), names.EXPANSION_LIMIT + 1),
        ).fetchall()
        expanded[pattern] = tuple(name for name, _ in rows)
        entries.update(rows)
    exact = sorted({term for group in user for term in group if "*" not in term})
    for term in exact:
        row = conn.execute(
            "SELECT entries FROM name_dictionary WHERE ccid = ? AND name = ?", (ccid, term)
        ).fetchone()
        entries[term] = row[0] if row else 0
    return plan_names(user, expanded, DictionaryCounts(entries, recordings), limit)


def number_drives(
    ccid: str, query: RecordingQuery, name_rows: float, total: int, limit: int, count: CountUpTo
) -> bool:
    """Whether some number criterion has fewer index entries than the names' branches: then
    walking the number's matches and checking names per candidate reads less."""
    cap = min(int(name_rows), max(1000, math.isqrt(limit * max(total, 1))))
    for column, pattern in (("caller", query.caller), ("dialed", query.dialed)):
        if pattern is None or pattern == "*":
            continue
        found = count_number(SQLITE, ccid, column, pattern, cap, count)
        if found is not None and found < cap:  # None: no index range, it can only filter
            return True
    return False


def read_page(
    conn: sqlite3.Connection,
    ccid: str,
    query: RecordingQuery,
    branches: Sequence[Branch],
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
) -> list[bytes]:
    """The stored documents of one page: the branches' ranges merged in order."""
    conn.execute("BEGIN")  # one snapshot for every branch and the documents
    try:
        ranges = [
            _range(conn, *_branch_sql(ccid, query, branch, region), after, limit, len(branches))
            for branch in branches
        ]
        page: list[int] = []
        seen: set[int] = set()
        for _, _, pk in heapq.merge(*ranges):
            if pk not in seen:
                seen.add(pk)
                page.append(pk)
                if len(page) == limit:
                    break
        docs = documents(conn, page)
    finally:
        conn.execute("COMMIT")
    return docs


def documents(conn: sqlite3.Connection, pks: Sequence[int]) -> list[bytes]:
    """The stored documents of a page's recordings, in the page's order, in one read."""
    found = dict(
        conn.execute(
            "SELECT pk, doc FROM recordings WHERE pk IN (SELECT value FROM json_each(?))",
            (f"[{','.join(map(str, pks))}]",),
        ).fetchall()
    )
    return [found[pk] for pk in pks]


def _range(
    conn: sqlite3.Connection,
    sql: str,
    params: list[Any],
    after: SearchKey | None,
    limit: int,
    branches: int,
) -> Iterator[tuple[int, str, int]]:
    """One branch's entries in order, read in chunks, each after the last one read: many
    branches share one prepared statement (a cursor left open per branch would need one
    each), and a branch that the page does not reach is read no further than its first
    chunk."""
    key: SearchKey = after if after is not None else (_BEFORE_ALL, "")
    chunk = max(_FIRST_CHUNK, -(-limit // branches))
    while True:
        rows = conn.execute(sql, [*params, key[0], key[0], key[1], chunk]).fetchall()
        yield from rows
        if len(rows) < chunk:
            return
        key = (rows[-1][0], rows[-1][1])
        chunk = min(chunk * 4, limit)


def _branch_sql(
    ccid: str,
    query: RecordingQuery,
    branch: Branch,
    region: str | None,
) -> tuple[str, list[Any]]:
    """``SELECT start_ms, id, pk`` of one name's range, in (startTime, id) order, filtered;
    its last parameters, added by the caller, are where to start (after a (start_ms, id):
    start_ms twice, then id) and how many to read."""
    clauses = ["n.ccid = ?", "n.name = ?"]
    params: list[Any] = [ccid, branch.name]
    if query.start_from is not None:
        clauses.append("n.start_ms >= ?")
        params.append(query.start_from)
    if query.end_before is not None:
        clauses.append("n.start_ms <= ? AND r.stop_ms <= ?")
        params += [query.end_before, query.end_before]
    # Signatures first: they leave out most entries without a probe.
    sig_clauses, sig_params = signature_filter(branch.others)
    clauses += sig_clauses
    params += sig_params
    # An exact number: a probe of its time-ordered index, which holds the entry's start and
    # pk, rather than a read of the recording's row. A frequent caller with a common name
    # leaves thousands of entries to check, and at millions of recordings each row is a page
    # of its own. (``+c.pk``: not the row by its pk, which SQLite would prefer.) The row is
    # then read only for the entries that pass. (These ranges are read only while every
    # index is there: during a bulk load the store plans generically, ``SQLiteStore._complete``.)
    numbers = []
    for column, pattern in (("caller", query.caller), ("dialed", query.dialed)):
        if pattern is None or pattern == "*":
            continue
        if "*" in pattern:
            numbers.append((column, pattern))
            continue
        clauses.append(
            f"EXISTS (SELECT 1 FROM recordings c WHERE c.ccid = n.ccid AND c.{column} = ?"
            " AND c.start_ms = n.start_ms AND +c.pk = n.pk)"
        )
        params.append(pattern)
    for term in branch.others:
        if term.exact:
            clauses.append(
                "EXISTS (SELECT 1 FROM recording_names m WHERE m.ccid = n.ccid AND m.name = ?"
                " AND m.start_ms = n.start_ms AND m.pk = n.pk)"
            )
            params.append(term.pattern)
        else:
            clauses.append(
                "EXISTS (SELECT 1 FROM recording_names m WHERE m.pk = n.pk AND m.name GLOB ?)"
            )
            params.append(to_glob(term.pattern))
    # The recording's own criteria, last: read only for entries that passed the others.
    for column, pattern in numbers:
        clause, param = _number(SQLITE, f"r.{column}", pattern)
        clauses.append(clause)
        params.append(param)
    if region is not None:
        clauses.append("r.region = ?")
        params.append(region)
    # Where to start: the index bounds the start; the id breaks ties.
    clauses.append("n.start_ms >= ? AND (n.start_ms > ? OR r.id > ?)")
    # CROSS JOIN: the names range is always the outer loop, read in order.
    sql = (
        "SELECT n.start_ms, r.id, n.pk FROM recording_names n"
        " CROSS JOIN recordings r ON r.pk = n.pk WHERE "
        + " AND ".join(clauses)
        + " ORDER BY n.start_ms, r.id LIMIT ?"
    )
    return sql, params
