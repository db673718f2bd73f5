"""Search as SQL, shared by the SQLite and PostgreSQL stores.

The query semantics live in ``callrec.query``; this module only says how each backend's own
means express them: SQLite ``GLOB`` and PostgreSQL ``LIKE`` over ``COLLATE "C"`` columns,
both case-sensitive and both able to use a B-tree for a literal prefix. Names are matched in
their case-folded form, computed in Python on both sides, so the result never depends on a
database collation. SQL is built with ``?`` placeholders; the PostgreSQL store turns them
into ``%s`` (no other ``?`` or ``%`` ever appears in the generated text).
"""

from __future__ import annotations

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
    names_key: str  # the recordings column the names table refers to
    names_ccid: bool  # whether names are keyed by contact center too (distribution key)


SQLITE = Dialect(to_glob, "GLOB ?", "pk", names_ccid=False)
POSTGRES = Dialect(to_like, "LIKE ? ESCAPE '\\'", "id", names_ccid=True)


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
    return f"r.{key} IN (" + " UNION ".join(groups) + ")", params


def search_sql(
    dialect: Dialect,
    ccid: str,
    query: RecordingQuery,
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
) -> tuple[str, list[Any]]:
    """``SELECT r.doc ...`` for one page of matches in (startTime, id) order."""
    clauses = ["r.ccid = ?"]
    params: list[Any] = [ccid]
    for column, pattern in (("r.caller", query.caller), ("r.dialed", query.dialed)):
        if pattern is not None and pattern != "*":
            clause, param = _number(dialect, column, pattern)
            clauses.append(clause)
            params.append(param)
    if query.start_from is not None:
        clauses.append("r.start_ms >= ?")
        params.append(query.start_from)
    if query.end_before is not None:
        # start <= stop, so the implied bound lets the time-ordered index stop early.
        clauses.append("r.stop_ms <= ? AND r.start_ms <= ?")
        params += [query.end_before, query.end_before]
    if query.user:
        clause, names_params = _names(dialect, ccid, query.user)
        clauses.append(clause)
        params += names_params
    if region is not None:
        clauses.append("r.region = ?")
        params.append(region)
    if after is not None:
        clauses.append("(r.start_ms, r.id) > (?, ?)")
        params += list(after)
    sql = (
        "SELECT r.doc FROM recordings r WHERE "
        + " AND ".join(clauses)
        + " ORDER BY r.start_ms, r.id LIMIT ?"
    )
    return sql, [*params, limit]
