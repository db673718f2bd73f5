"""userName search on PostgreSQL: the branches of ``store.names`` as SQL.

Each branch is an ordered range of ``recording_names`` keyed ``(ccid, name, start_ms, id)
INCLUDE (sig)``; the time window and the cursor are bounds of the same range.

* OR: ``UNION ALL`` of the branches, each ordered and cut at the page size, becomes a Merge
  Append, and ``DISTINCT ON`` drops a recording found twice;
* AND: the driver's range, filtered by the signature, then by primary-key probes for the other
  exact names (the rarest term by PostgreSQL's own statistics, ``load_name_stats``);
* wildcards: expanded through ``name_dictionary`` (every name ever indexed per contact center;
  names no longer in use just match nothing); as a filter, a ``LIKE`` probe among the
  recording's names.

When wildcards stand for too many names to merge, the generic plan of ``sqlsearch`` answers
(the time-ordered walk when a term is common, else the set of matches from the index). Other
criteria (numbers, region, endTime) apply to each branch's recordings, and PostgreSQL's
planner may then start from the recordings' own indexes (an exact caller) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from callrec.query import RecordingQuery
from callrec.store import SearchKey, names
from callrec.store.names import SIGNATURE_BITS, Branch, signature_filter, wildcards
from callrec.store.sqlsearch import POSTGRES, _number, to_like

STATISTICS_TARGET = 500
"""Most common names PostgreSQL keeps counts of, for choosing the rarest term of a group."""


def name_bits_sql(column: str) -> str:
    """:func:`name_bits` of a text column, as SQL (for the migration that fills signatures)."""
    digest = f"decode(md5({column}), 'hex')"
    return " | ".join(
        f"(1::bigint << (get_byte({digest}, {i}) & 63))" for i in range(SIGNATURE_BITS)
    )


@dataclass(frozen=True, slots=True)
class NameStats:
    """How many index entries a name has, as PostgreSQL's statistics estimate it."""

    common: dict[str, float]  # most common names: their share of the index entries
    other: float  # the share of any other name
    entries: float  # index entries (names of all recordings)
    recordings: float

    def rows(self, names: Iterable[str]) -> float:
        return self.entries * sum(self.common.get(name, self.other) for name in names)


NO_STATS = NameStats({}, 0.0, 0.0, 0.0)

_STATS_SQL = """SELECT
    (SELECT reltuples FROM pg_class WHERE oid = 'recording_names'::regclass),
    (SELECT reltuples FROM pg_class WHERE oid = 'recordings'::regclass),
    s.most_common_vals::text::text[], s.most_common_freqs, s.n_distinct, s.null_frac
FROM (SELECT 1) AS one LEFT JOIN pg_stats s ON s.schemaname = current_schema()
    AND s.tablename = 'recording_names' AND s.attname = 'name'"""


def load_name_stats(conn: psycopg.Connection[Any]) -> NameStats:
    row = conn.execute(_STATS_SQL).fetchone()
    if row is None:
        return NO_STATS
    entries, recordings, values, freqs, n_distinct, null_frac = row
    entries, recordings = max(0.0, entries or 0.0), max(0.0, recordings or 0.0)
    if not values or not freqs or n_distinct is None:
        return NameStats({}, 0.0, entries, recordings)
    distinct = -n_distinct * entries if n_distinct < 0 else n_distinct
    rest = max(0.0, 1.0 - sum(freqs) - (null_frac or 0.0))
    other = rest / max(1.0, distinct - len(values))
    return NameStats(dict(zip(values, freqs, strict=False)), other, entries, recordings)


def expand(
    conn: psycopg.Connection[Any], ccid: str, user: tuple[tuple[str, ...], ...]
) -> dict[str, tuple[str, ...]]:
    """The names each wildcard term stands for (up to ``names.EXPANSION_LIMIT + 1`` of them)."""
    patterns = wildcards(user)
    if not patterns:
        return {}
    # One select per pattern, planned with its value (prepare=False): a literal prefix is then
    # a range of the dictionary's key.
    sql = " UNION ALL ".join(
        f"(SELECT {i} AS i, name FROM name_dictionary WHERE ccid = %s"
        " AND name LIKE %s ESCAPE '\\' LIMIT %s)"
        for i in range(len(patterns))
    )
    params: list[Any] = []
    for pattern in patterns:
        params += [ccid, to_like(pattern), names.EXPANSION_LIMIT + 1]
    found: dict[str, list[str]] = {pattern: [] for pattern in patterns}
    for i, name in conn.execute(sql.encode(), params, prepare=False):
        found[patterns[i]].append(name)
    return {pattern: tuple(sorted(matched)) for pattern, matched in found.items()}


def needs_stats(user: tuple[tuple[str, ...], ...], expanded: dict[str, tuple[str, ...]]) -> bool:
    """Whether planning depends on how common names are: a group of several terms (which one
    drives), or a wildcard too wide to merge (walk or collect)."""
    return any(len(group) > 1 for group in user) or any(
        len(found) > names.MAX_BRANCHES for found in expanded.values()
    )


def search_names_sql(
    ccid: str,
    query: RecordingQuery,
    branches: Sequence[Branch],
    *,
    limit: int,
    after: SearchKey | None,
    region: str | None,
) -> tuple[str, list[Any], bool]:
    """``SELECT doc ...`` for one page: the branches' ordered ranges merged; and whether the
    branches read the names index alone."""
    # Criteria of the recording itself are checked in each branch (the planner may then start
    # from the recordings' indexes); without any, branches read the names index alone and
    # only the page's recordings are fetched.
    joined = (
        query.caller not in (None, "*")
        or query.dialed not in (None, "*")
        or query.end_before is not None
        or region is not None
    )
    parts = []
    params: list[Any] = []
    for branch in branches:
        sql, branch_params = _branch_sql(ccid, query, branch, limit, after, region, joined)
        parts.append(sql)
        params += branch_params
    if joined and len(parts) == 1:
        return parts[0], params, False
    if joined:
        union = " UNION ALL ".join(f"({part})" for part in parts)
        sql = (
            f"SELECT DISTINCT ON (k.start_ms, k.id) k.document FROM ({union}) AS k"
            " ORDER BY k.start_ms, k.id LIMIT ?"
        )
        return sql, [*params, limit], False
    if len(parts) == 1:
        keys = parts[0]
    else:
        union = " UNION ALL ".join(f"({part})" for part in parts)
        keys = (
            f"SELECT DISTINCT ON (u.start_ms, u.id) u.start_ms, u.id FROM ({union}) AS u"
            " ORDER BY u.start_ms, u.id LIMIT ?"
        )
        params.append(limit)
    sql = (
        f"SELECT r.document FROM ({keys}) AS k JOIN recordings r ON r.ccid = ? AND r.id = k.id"
        " ORDER BY k.start_ms, k.id"
    )
    return sql, [*params, ccid], True


def _range(
    alias: str, query: RecordingQuery, after: SearchKey | None
) -> tuple[list[str], list[Any]]:
    """The window and the cursor on ``alias``'s (start_ms, id): the bounds of its range, and
    their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.start_from is not None:
        clauses.append(f"{alias}.start_ms >= ?")
        params.append(query.start_from)
    if query.end_before is not None:
        clauses.append(f"{alias}.start_ms <= ?")
        params.append(query.end_before)
    if after is not None:
        clauses.append(f"({alias}.start_ms, {alias}.id) > (?, ?)")
        params += list(after)
    return clauses, params


def _branch_sql(
    ccid: str,
    query: RecordingQuery,
    branch: Branch,
    limit: int,
    after: SearchKey | None,
    region: str | None,
    joined: bool,
) -> tuple[str, list[Any]]:
    bounds, bound_params = _range("n", query, after)
    clauses = ["n.ccid = ?", "n.name = ?", *bounds]
    params: list[Any] = [ccid, branch.name, *bound_params]
    if query.end_before is not None:
        clauses.append("r.stop_ms <= ?")
        params.append(query.end_before)
    joins = ""
    for alias, name, pattern in (("c", "caller", query.caller), ("d", "dialed", query.dialed)):
        if pattern is None or pattern == "*":
            continue
        if "*" in pattern:
            clause, param = _number(POSTGRES, f"r.{name}", pattern)
            clauses.append(clause)
            params.append(param)
            continue
        # An exact number's entries, like the name's, are in (start_ms, id) order within the
        # window: joined on both, the planner can merge the two index ranges without reading
        # a table row (a frequent caller and a common name: thousands of entries each, where
        # a probe per entry cost tens of milliseconds at 10M), or still probe per entry.
        joins += (
            f" JOIN recordings {alias} ON {alias}.ccid = n.ccid"
            f" AND {alias}.start_ms = n.start_ms AND {alias}.id = n.id"
        )
        bounds, bound_params = _range(alias, query, after)
        clauses += [f"{alias}.ccid = ?", f"{alias}.{name} = ?", *bounds]
        params += [ccid, pattern, *bound_params]
    if region is not None:
        clauses.append("r.region = ?")
        params.append(region)
    # Signatures first: they leave out most entries without a probe.
    sig_clauses, sig_params = signature_filter(branch.others)
    clauses += sig_clauses
    params += sig_params
    # OFFSET 0 keeps each probe a probe: as a join, the planner would read the other name's
    # whole range (its statistics cannot see that names of one recording go together).
    for term in branch.others:
        if term.exact:
            clauses.append(
                "EXISTS (SELECT 1 FROM recording_names m WHERE m.ccid = n.ccid AND m.name = ?"
                " AND m.start_ms = n.start_ms AND m.id = n.id OFFSET 0)"
            )
            params.append(term.pattern)
        else:
            clauses.append(
                "EXISTS (SELECT 1 FROM recording_names m WHERE m.ccid = n.ccid AND m.id = n.id"
                " AND m.name LIKE ? ESCAPE '\\' OFFSET 0)"
            )
            params.append(to_like(term.pattern))
    head = (
        f"SELECT r.document, n.start_ms, n.id FROM recording_names n{joins}"
        " JOIN recordings r ON r.ccid = n.ccid AND r.id = n.id"
        if joined
        else "SELECT n.start_ms, n.id FROM recording_names n"
    )
    sql = f"{head} WHERE " + " AND ".join(clauses) + " ORDER BY n.start_ms, n.id LIMIT ?"
    return sql, [*params, limit]
