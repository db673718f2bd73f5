"""The naive plan: what a search costs without callrec's indexes and planner.

One plain SQL statement per query, run directly against the benchmark's database: a full scan
of the recordings that tests every predicate on every row (SQLite ``GLOB``, PostgreSQL
``LIKE``), the same (startTime, id) ordering and the same page size. Names are matched by
scanning the whole table of case-folded names once per term. SQLite is kept from its indexes
with ``NOT INDEXED``, PostgreSQL with ``enable_indexscan``/``enable_bitmapscan``/
``enable_indexonlyscan`` off. Region filters play no part; a deep page is an ``OFFSET``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from reference import last_offset

from callrec.query import RecordingQuery, parse_query, to_glob
from callrec.store.sqlsearch import POSTGRES, SQLITE, to_like

Execute = Callable[[str, list[Any]], list[tuple[Any, ...]]]


@dataclass
class NaiveResult:
    times: list[float]  # ms per query
    answers: list[list[str]]  # the ids each query returned


def naive_sql(
    postgres: bool, ccid: str, query: RecordingQuery, limit: int, page: int = 1
) -> tuple[str, list[Any]]:
    """``SELECT id, doc ...`` of one page, as a plain scan (a deep page by ``OFFSET``, as plain
    SQL pages); ``?`` placeholders."""
    wildcard, op = (to_like, "LIKE ? ESCAPE '\\'") if postgres else (to_glob, "GLOB ?")
    # SQLite: NOT INDEXED keeps the recordings' indexes out; a unary + keeps the planner from
    # looking up rowids or the names' key by name, so each IN list is a full scan.
    not_indexed, plus = ("", "") if postgres else (" NOT INDEXED", "+")
    key, names_key = ("(r.ccid, r.id)", "ccid, id") if postgres else ("+r.pk", "pk")
    clauses = ["r.ccid = ?"]
    params: list[Any] = [ccid]
    for column, pattern in (("caller", query.caller), ("dialed", query.dialed)):
        if pattern is not None:
            clauses.append(f"r.{column} {op}")
            params.append(wildcard(pattern))
    if query.start_from is not None:
        clauses.append("r.start_ms >= ?")
        params.append(query.start_from)
    if query.end_before is not None:
        clauses.append("r.stop_ms <= ?")
        params.append(query.end_before)
    if query.user:
        groups = []
        for group in query.user:
            terms = []
            for term in group:
                terms.append(
                    f"{key} IN (SELECT {names_key} FROM recording_names WHERE {plus}name {op})"
                )
                params.append(wildcard(term))
            groups.append("(" + " AND ".join(terms) + ")")
        clauses.append("(" + " OR ".join(groups) + ")")
    sql = (
        f"SELECT r.id, r.{(POSTGRES if postgres else SQLITE).document}"
        f" FROM recordings r{not_indexed} WHERE "
        + " AND ".join(clauses)
        + " ORDER BY r.start_ms, r.id LIMIT ? OFFSET ?"
    )
    return sql, [*params, limit, (page - 1) * limit]


@contextmanager
def connect(url: str) -> Iterator[Execute]:
    """An ``execute(sql, params) -> rows`` on the database of a callrec database URL."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            yield lambda sql, params: conn.execute(sql, params).fetchall()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for path in ("indexscan", "bitmapscan", "indexonlyscan"):
            pg.execute(f"SET enable_{path} = off")
        yield lambda sql, params: pg.execute(sql.replace("?", "%s"), params).fetchall()


def measure_naive(
    url: str, ccid: str, classes: dict[str, list[dict[str, str]]], limit: int
) -> dict[str, NaiveResult]:
    """Run every query of every class once (after one untimed warm-up query)."""
    postgres = not url.startswith("sqlite:")
    results = {}
    with connect(url) as execute:
        warmed = False
        for name, queries in classes.items():
            result = NaiveResult([], [])
            for params in queries:
                page = int(params.get("page", "1"))
                if page > 1:  # as the bench pages: to the last page there is (untimed)
                    sql, values = naive_sql(postgres, ccid, parse_query(params), limit * page)
                    page = last_offset(len(execute(sql, values)), page, limit) // limit + 1
                sql, values = naive_sql(postgres, ccid, parse_query(params), limit, page)
                if not warmed:
                    execute(sql, values)
                    warmed = True
                started = time.perf_counter()
                rows = execute(sql, values)
                result.times.append((time.perf_counter() - started) * 1000)
                result.answers.append([row[0] for row in rows])
            results[name] = result
    return results


def explain(url: str, ccid: str, params: dict[str, str], limit: int) -> str:
    """The database's plan of one naive query, for checking by eye that it scans."""
    sql, values = naive_sql(not url.startswith("sqlite:"), ccid, parse_query(params), limit)
    prefix = "EXPLAIN QUERY PLAN " if url.startswith("sqlite:") else "EXPLAIN "
    with connect(url) as execute:
        return "\n".join(" ".join(str(c) for c in row) for row in execute(prefix + sql, values))
