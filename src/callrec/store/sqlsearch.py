"""Search as SQL, shared by the SQLite and PostgreSQL stores.

The query semantics live in ``callrec.query``; this module only says how each backend's own
means express them: SQLite ``GLOB`` and PostgreSQL ``LIKE`` over ``COLLATE "C"`` columns,
both case-sensitive and both able to use a B-tree for a literal prefix. Names are matched in
their case-folded form, computed in Python on both sides, so the result never depends on a
database collation. SQL is built with ``?`` placeholders; the PostgreSQL store turns them
into ``%s`` (no other ``?`` or ``%`` ever appears in the generated text).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callrec.query import RecordingQuery, to_glob
from callrec.store import SearchKey


def to_like(pattern: str) -> str:
    """A ``*``-wildcard pattern as a ``LIKE`` pattern with ``\\`` as the escape character."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend writes a wildcard match and a name-set lookup."""

    wildcard: Callable[[str], str]
    match_op: str  # "GLOB ?" / "LIKE ? ESCAPE '\\'"
    names_key: str  # the names table's columns that identify a recording
    names_member: str  # the same of the recordings row r
    names_ccid: bool  # whether names are keyed by contact center too (distribution key)
    names_join: str  # correlates recording_names n with recordings r
    no_index: str  # prefix that keeps the planner from using an index for a term
    trigrams: bool  # numbers have a trigram index (SQLite FTS5) to find infix candidates
    ordered_numbers: bool = False  # numbers are indexed with (start_ms, id) after them
    keys_first: bool = False  # a page's keys are found first, its documents read after
    document: str = "doc"  # the column of the recording's JSON


SQLITE = Dialect(
    to_glob,
    "GLOB ?",
    "pk",
    "r.pk",
    True,
    "n.pk = r.pk",
    "+",
    trigrams=True,
    ordered_numbers=True,
    keys_first=True,
)
POSTGRES = Dialect(
    to_like,
    "LIKE ? ESCAPE '\\'",
    "ccid, id",
    "(r.ccid, r.id)",  # the whole key, so that the primary key answers the membership
    True,
    "n.ccid = r.ccid AND n.id = r.id",
    "",
    trigrams=False,  # pg_trgm GIN indexes serve LIKE '%...%' through PostgreSQL's own planner
    document="document",  # compressed bytes (callrec/doccodec)
)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which predicates are dense. A dense predicate is answered by walking recordings in
    (startTime, id) order and stopping at the page's end; a sparse one by collecting its
    matches from an index and sorting them. Which is cheaper depends on how many match."""

    dense_names: bool = False  # names checked per recording, not collected as a set
    dense_numbers: frozenset[str] = frozenset()  # of "caller", "dialed"
    trigram_numbers: frozenset[str] = frozenset()  # infix patterns answered by trigrams


def trigram_match(pattern: str) -> str | None:
    """An FTS5 query for the candidates of an infix pattern in its number's trigram index
    (``caller_fts``, ``dialed_fts``): every literal run of three or more characters must
    occur (the trigram tokenizer folds case, so this finds a superset; the pattern itself is
    still applied). None when there is no such run."""
    if not (pattern.startswith("*") and pattern.endswith("*")):
        return None
    runs = [run for run in pattern.split("*") if len(run) >= 3]
    # Numbers are normalised to [A-Za-z0-9]: nothing in a run needs quoting.
    return " AND ".join(f'"{run}"' for run in runs) or None


CountUpTo = Callable[[str, list[Any], int], int]
TRIGRAM_COST = 16  # measured at 1M recordings: 2.6 µs per candidate, 0.17 µs per walked entry


def plan_search(
    dialect: Dialect,
    ccid: str,
    query: RecordingQuery,
    limit: int,
    total: int,
    count: CountUpTo,
    *,
    trigrams_first: bool = False,
) -> Plan:
    """Decide per predicate from a bounded count of its index entries.

    Walking in time order reads about ``limit * total / matches`` rows; collecting reads
    ``matches``. They cross near ``sqrt(limit * total)``: count up to that and no further.
    ``trigrams_first``: infix patterns take their trigram candidates uncounted (SQLite reads
    them by blocks of recordings, up to the page's end: ``sqliteblocks``).
    """
    cap = max(1000, math.isqrt(limit * max(total, 1)))
    # A trigram candidate costs a posting and a table row, TRIGRAM_COST times a step of the
    # walk over the covering time-ordered index: the crossover comes that much earlier.
    trigram_cap = max(100, math.isqrt(limit * max(total, 1) // TRIGRAM_COST))
    dense_numbers = set()
    trigram_numbers = set()
    sparse_number = False  # some number's own index gives few candidates
    for name, pattern in (("caller", query.caller), ("dialed", query.dialed)):
        if pattern is None or pattern == "*":
            continue
        if dialect.trigrams and trigram_match(pattern) is not None:
            found = (
                0
                if trigrams_first
                else count_number(dialect, ccid, name, pattern, trigram_cap, count)
            )
            if found is not None and found < trigram_cap:
                trigram_numbers.add(name)
                sparse_number = True
            continue
        if dialect.ordered_numbers and "*" not in pattern:
            # (ccid, number, start_ms, id): an exact number's matches come in page order, and
            # a page is its first entries, however many there are.
            sparse_number = True
            continue
        found = count_number(dialect, ccid, name, pattern, cap, count)
        if found is None:
            continue  # no index range to count in: the time-ordered walk it is
        if found >= cap:
            dense_numbers.add(name)
        else:
            sparse_number = True
    # Few candidates from a number: checking each one's names costs less than counting them.
    dense_names = sparse_number and bool(query.user)
    for group in () if dense_names else query.user or ():
        # The OR of groups is as dense as its densest group. Terms joined by AND may each be
        # common yet rarely meet (a common first name AND a common last name): a walk could
        # then read far, while intersecting their index entries stays bounded by their sizes.
        if len(group) == 1 and count(*_name_term(dialect, ccid, group[0]), cap) >= cap:
            dense_names = True
            break
    return Plan(dense_names, frozenset(dense_numbers), frozenset(trigram_numbers))


def count_number(
    dialect: Dialect, ccid: str, column: str, pattern: str, cap: int, count: CountUpTo
) -> int | None:
    """How many index entries give a number pattern's candidates, counted up to ``cap``: its
    trigram candidates (an infix with a literal run of three) or its index range (exact,
    prefix, or suffix through the reversed number). None when no index gives them."""
    fts = trigram_match(pattern) if dialect.trigrams else None
    if fts is not None:
        return count(f"SELECT 1 FROM {column}_fts WHERE {column}_fts MATCH ?", [fts], cap)
    clause, param = _number(dialect, f"r.{column}", pattern)
    if param.startswith(("*", "%")):
        return None
    return count(f"SELECT 1 FROM recordings r WHERE r.ccid = ? AND {clause}", [ccid, param], cap)


def _name_term(dialect: Dialect, ccid: str, term: str) -> tuple[str, list[Any]]:
    clause, param = _match(dialect, "name", term)
    if dialect.names_ccid:
        return f"SELECT 1 FROM recording_names WHERE ccid = ? AND {clause}", [ccid, param]
    return f"SELECT 1 FROM recording_names WHERE {clause}", [param]


def _match(dialect: Dialect, column: str, pattern: str) -> tuple[str, str]:
    # An exact value compares with "=" so that the B-tree index answers it.
    if "*" not in pattern:
        return f"{column} = ?", pattern
    return f"{column} {dialect.match_op}", dialect.wildcard(pattern)


def _number(dialect: Dialect, column: str, pattern: str) -> tuple[str, str]:
    # "*8888" or "*46*8888": the reversed number has a literal prefix, which an index on the
    # reversed column answers as a range.
    if pattern.startswith("*") and not pattern.endswith("*"):
        return _match(dialect, f"{column}_rev", pattern[::-1])
    return _match(dialect, column, pattern)


def _names_walk(dialect: Dialect, user: tuple[tuple[str, ...], ...]) -> tuple[str, list[Any]]:
    """Per recording, in time order: does some group have every term among its names?"""
    params: list[Any] = []
    groups = []
    for group in user:
        terms = []
        for term in group:
            clause, param = _match(dialect, "n.name", term)
            terms.append(
                f"EXISTS (SELECT 1 FROM recording_names n WHERE {dialect.names_join} AND {clause})"
            )
            params.append(param)
        groups.append("(" + " AND ".join(terms) + ")")
    return "(" + " OR ".join(groups) + ")", params


def _names(dialect: Dialect, ccid: str, user: tuple[tuple[str, ...], ...]) -> tuple[str, list[Any]]:
    """The set of matching recordings from the names index: INTERSECT for AND, UNION for OR."""
    key = dialect.names_key
    params: list[Any] = []
    groups = []
    for group in user:
        terms = []
        for term in group:
            clause, param = _match(dialect, "name", term)
            scope = ""
            if dialect.names_ccid:
                scope = "ccid = ? AND "
                params.append(ccid)
            terms.append(f"SELECT {key} FROM recording_names WHERE {scope}{clause}")
            params.append(param)
        # Compound operators apply left to right (SQLite) : each AND group is a sub-select
        # of its own, so that it binds tighter than the UNION.
        groups.append(f"SELECT {key} FROM (" + " INTERSECT ".join(terms) + ") AS g")
    return f"{dialect.names_member} IN (" + " UNION ".join(groups) + ")", params


def search_sql(
    dialect: Dialect,
    ccid: str,
    query: RecordingQuery,
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
    plan: Plan = Plan(),
) -> tuple[str, list[Any]]:
    """``SELECT r.doc ...`` for one page of matches in (startTime, id) order."""
    where, params = search_where(dialect, ccid, query, after=after, region=region, plan=plan)
    if dialect.keys_first:
        # Matches collected from an index and sorted (a suffix, a prefix) are sorted by the
        # index's own (start_ms, id): only the page's rows are then read, documents and all.
        key = ", ".join(f"r.{column.strip()}" for column in dialect.names_key.split(","))
        sql = (
            f"SELECT r.{dialect.document} FROM recordings r WHERE {dialect.names_member} IN"
            f" (SELECT {key}"
            f" FROM recordings r WHERE {where} ORDER BY r.start_ms, r.id LIMIT ?)"
            " ORDER BY r.start_ms, r.id"
        )
    else:
        sql = (
            f"SELECT r.{dialect.document} FROM recordings r WHERE {where}"
            " ORDER BY r.start_ms, r.id LIMIT ?"
        )
    return sql, [*params, limit]


def search_where(
    dialect: Dialect,
    ccid: str,
    query: RecordingQuery,
    *,
    after: SearchKey | None,
    region: str | None,
    plan: Plan,
    trigram_rows: tuple[int, int] | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` of a search over ``recordings r``; ``trigram_rows``: only the trigram
    candidates whose rowid lies in that range (first, last)."""
    clauses = ["r.ccid = ?"]
    params: list[Any] = [ccid]
    for name, pattern in (("caller", query.caller), ("dialed", query.dialed)):
        if pattern is not None and pattern != "*":
            if name in plan.dense_numbers:
                # Walked in time order: the number itself, which the time-ordered index
                # holds (never the reversed form, which it does not).
                clause, param = _match(dialect, f"{dialect.no_index}r.{name}", pattern)
            else:
                clause, param = _number(dialect, f"r.{name}", pattern)
            clauses.append(clause)
            params.append(param)
            fts = trigram_match(pattern) if name in plan.trigram_numbers else None
            if fts is not None:
                rows = "" if trigram_rows is None else " AND rowid BETWEEN ? AND ?"
                clauses.append(
                    f"r.pk IN (SELECT rowid FROM {name}_fts WHERE {name}_fts MATCH ?{rows})"
                )
                params += [fts, *(trigram_rows or ())]
    if query.start_from is not None:
        clauses.append("r.start_ms >= ?")
        params.append(query.start_from)
    if query.end_before is not None:
        # start <= stop, so the implied bound lets the time-ordered index stop early.
        clauses.append("r.stop_ms <= ? AND r.start_ms <= ?")
        params += [query.end_before, query.end_before]
    if query.user:
        walk = _names_walk(dialect, query.user) if plan.dense_names else None
        clause, names_params = walk or _names(dialect, ccid, query.user)
        clauses.append(clause)
        params += names_params
    if region is not None:
        clauses.append("r.region = ?")
        params.append(region)
    if after is not None:
        clauses.append("(r.start_ms, r.id) > (?, ?)")
        params += list(after)
    return " AND ".join(clauses), params
