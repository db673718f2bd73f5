"""The least an import into SQLite can cost a recording, whatever Python does around it.

    python bench/import_floor.py FILE [--work DIR] [--aim 50000] [--cores 2]

1. Imports FILE (JSON lines) with the real `callrec import` into a new database, and takes
   the CPU of its processes (the writing one and its workers).
2. Times, per line, the libraries every line goes through in C: orjson decoding the line and
   encoding the document, zstd compressing it (``callrec.doccodec``).
3. Inserts the rows that import stored again, with SQLite alone (no validation, no keys, no
   Python beyond ``executemany``), into a new database with the schema and settings of a
   load (the derived indexes and triggers dropped, the same transactions), then builds the
   derived structures as a load's end does.
4. Prints microseconds of CPU a recording for each part, their sum (the floor), the import's
   own, and the budget the aim leaves: cores x 1e6 / aim. A floor above the budget means no
   work in Python can reach the aim with this schema on this many cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from servers import callrec

from callrec.doccodec import pack
from callrec.store.sqlite import _BUILD_PRAGMAS, _BULK_PRAGMAS, LOAD_COMMIT, SQLiteStore
from callrec.store.sqliteschema import DERIVED, build_steps, kind, migrate

SAMPLE = 50_000  # lines the libraries are timed over


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_import(jsonl: Path, data: Path) -> tuple[int, float, float]:
    """Recordings imported, wall seconds and CPU seconds of the import's processes."""
    env = {**os.environ, "CALLREC_DATA_DIR": str(data)}
    cpu, started = children_cpu(), time.perf_counter()
    callrec(env, "import", str(jsonl), "--contact-center", "bench")
    wall = time.perf_counter() - started
    with sqlite3.connect(data / "callrec.db") as conn:
        count: int = conn.execute("SELECT count(*) FROM recordings").fetchone()[0]
    return count, wall, children_cpu() - cpu


def per_item(fn: Callable[[Any], object], items: list[Any]) -> float:
    """Best of three passes, in µs an item."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


def libraries(jsonl: Path) -> list[tuple[str, float]]:
    with jsonl.open("rb") as handle:
        lines = [line for _, line in zip(range(SAMPLE), handle, strict=False)]
    docs = [orjson.loads(line) for line in lines]
    blobs = [orjson.dumps(doc) for doc in docs]
    return [
        ("orjson: decode the line", per_item(orjson.loads, lines)),
        ("orjson: encode the document", per_item(orjson.dumps, docs)),
        ("zstd: compress it (doccodec)", per_item(pack, blobs)),
    ]


def stored_rows(db: Path) -> tuple[list[str], list[tuple[Any, ...]], dict[int, list[Any]]]:
    """The recordings' columns and rows in pk order, and the name entries by pk."""
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(recordings)")]
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM recordings ORDER BY pk").fetchall()
        names: dict[int, list[Any]] = defaultdict(list)
        for entry in conn.execute("SELECT ccid, name, start_ms, pk, sig FROM recording_names"):
            names[entry[3]].append(entry)
    return columns, rows, names


def cpu_of(step: Callable[[], object]) -> float:
    started = time.process_time()  # this process's, helper threads included
    step()
    return time.process_time() - started


def sqlite_alone(
    db: Path, columns: list[str], rows: list[Any], names: dict[int, list[Any]]
) -> list[tuple[str, float]]:
    """Seconds of CPU SQLite takes to store the rows and names again, and to build the rest."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn)
    for name, ddl in DERIVED.items():
        conn.execute(f"DROP {kind(ddl)} IF EXISTS {name}")
    for pragma, during_load, _ in _BULK_PRAGMAS:  # as a load sets them
        conn.execute(f"PRAGMA {pragma} = {during_load}")
    insert_row = (
        f"INSERT INTO recordings ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    insert_name = (
        "INSERT INTO recording_names (ccid, name, start_ms, pk, sig) VALUES (?, ?, ?, ?, ?)"
    )
    spent = {"recordings rows": 0.0, "names entries": 0.0, "commits": 0.0}
    conn.execute("BEGIN")
    size = SQLiteStore.load_size  # as a load writes them, and commits them
    for first in range(0, len(rows), size):
        batch = rows[first : first + size]
        entries = [entry for row in batch for entry in names.get(row[0], ())]
        spent["recordings rows"] += cpu_of(partial(conn.executemany, insert_row, batch))
        spent["names entries"] += cpu_of(partial(conn.executemany, insert_name, entries))
        if (first + size) % LOAD_COMMIT == 0:
            spent["commits"] += cpu_of(lambda: conn.execute("COMMIT"))
            conn.execute("BEGIN")
    spent["commits"] += cpu_of(lambda: conn.execute("COMMIT"))
    for pragma, building, _ in _BUILD_PRAGMAS:
        conn.execute(f"PRAGMA {pragma} = {building}")
    wall = time.perf_counter()

    def build() -> None:
        for step in build_steps(dict(DERIVED)):
            conn.execute("BEGIN")
            for statement in step:
                conn.execute(statement)
            conn.execute("COMMIT")
        conn.execute("PRAGMA analysis_limit = 1000")  # the store's sampled statistics
        conn.execute("ANALYZE")

    spent["index builds and statistics"] = cpu_of(build)
    wall = time.perf_counter() - wall
    conn.close()
    return [(f"SQLite: {part}", seconds) for part, seconds in spent.items()] + [
        ("(index builds, wall)", wall)
    ]


def contents(db: Path) -> tuple[int, int, list[str]]:
    """Recordings, name entries, and every table, index and trigger by name."""
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM recordings").fetchone()[0],
            conn.execute("SELECT count(*) FROM recording_names").fetchone()[0],
            [name for (name,) in conn.execute("SELECT name FROM sqlite_master ORDER BY name")],
        )


def table(rows: Iterable[tuple[str, str]]) -> None:
    for part, value in rows:
        print(f"| {part:<52} | {value:>12} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jsonl", type=Path, help="recordings, one JSON document a line")
    parser.add_argument("--work", type=Path, help="where the databases go (default: a temp dir)")
    parser.add_argument("--aim", type=float, default=50_000, help="recordings/s aimed at")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        data = Path(work) / "import"
        print(f"importing {args.jsonl} ...", file=sys.stderr)
        count, wall, cpu = run_import(args.jsonl, data)
        print("timing the libraries ...", file=sys.stderr)
        parts = libraries(args.jsonl)
        print("storing the same rows with SQLite alone ...", file=sys.stderr)
        columns, rows, names = stored_rows(data / "callrec.db")
        entries = sum(map(len, names.values()))
        alone = sqlite_alone(Path(work) / "floor.db", columns, rows, names)
        build_wall = alone.pop()[1]
        if contents(Path(work) / "floor.db") != contents(data / "callrec.db"):
            raise SystemExit("SQLite alone stored something else than the import: not a floor")
        micro = [*parts, *((part, seconds / count * 1e6) for part, seconds in alone)]
        floor = sum(value for _, value in micro)
        budget = args.cores * 1e6 / args.aim
        print(f"\n{count:,} recordings, {entries / count:.2f} name entries a recording")
        table([("part", "µs CPU/rec"), ("-" * 52, "-" * 12)])
        table((part, f"{value:.2f}") for part, value in micro)
        table(
            [
                ("floor: the parts above, in all", f"{floor:.2f}"),
                (
                    f"callrec import, its processes ({count / wall:,.0f}/s)",
                    f"{cpu / count * 1e6:.2f}",
                ),
                (f"budget: {args.cores} cores at {args.aim:,.0f}/s", f"{budget:.2f}"),
            ]
        )
        verdict = "out of reach of any Python" if floor > budget else "within reach"
        print(
            f"\nfloor / budget = {floor / budget:.2f}: the aim is {verdict} with this schema."
            f"\nThe index builds, which nothing overlaps, took {build_wall:.1f} s:"
            f" {build_wall / count * 1e6:.2f} µs a recording of the {1e6 / args.aim:.2f}"
            " the aim allows in all."
        )


if __name__ == "__main__":
    main()
