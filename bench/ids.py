"""SQLite alone: a load's rows with the index of ids kept up to date, against the same rows
without it and the index built once at the end (what a load into an empty database does
since schema 9). No callrec code runs per row: the rows are made by SQL, so the figures are
SQLite's own.

    .venv/bin/python bench/ids.py                      # 2,000,000 rows, 2 rounds
    .venv/bin/python bench/ids.py --size 10000000 --rounds 1

Each round runs both ways one after the other, in a new database each (in --work, removed
after); the table prints each way's median and their ratio. Ids are random, as a contact
center's are: 26 hex digits and a suffix, about the length of the demo's.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from callrec.store.sqlite import _BUILD_PRAGMAS, _BULK_PRAGMAS, LOAD_COMMIT
from callrec.store.sqliteschema import DERIVED, IDS, kind, migrate

ROWS = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT {count})
INSERT INTO recordings (pk, ccid, id, region, start_ms, stop_ms, caller, dialed, doc,
                        caller_rev, dialed_rev)
SELECT {first} + x, 'bench', '0' || hex(randomblob(13)) || 'LAES', 'region',
       1600000000000 + ({first} + x) * 9000, 1600000000000 + ({first} + x) * 9000 + 60000,
       '+1650' || (abs(random()) % 10000000), '+18005550' || (abs(random()) % 300),
       randomblob(700), '', ''
FROM n
"""


def run(path: Path, size: int, deferred: bool) -> tuple[float, float]:
    """Seconds for the rows, and for building the index of ids after them (0 when kept)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        migrate(conn)
        for name, ddl in DERIVED.items():  # as a load into an empty database drops them
            if name != IDS or deferred:
                conn.execute(f"DROP {kind(ddl)} IF EXISTS {name}")
        for pragma, during, _ in _BULK_PRAGMAS:
            conn.execute(f"PRAGMA {pragma} = {during}")
        start = time.perf_counter()
        for first in range(0, size, LOAD_COMMIT):
            conn.execute("BEGIN")
            conn.execute(ROWS.format(first=first, count=min(LOAD_COMMIT, size - first)))
            conn.execute("COMMIT")
        rows = time.perf_counter() - start
        start = time.perf_counter()
        if deferred:
            for pragma, building, _ in _BUILD_PRAGMAS:
                conn.execute(f"PRAGMA {pragma} = {building}")
            conn.execute(DERIVED[IDS])
        return rows, time.perf_counter() - start
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for round_no in range(args.rounds):
            for deferred in (False, True):
                path = Path(work) / f"ids-{round_no}-{int(deferred)}.db"
                results[deferred].append(run(path, args.size, deferred))
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                rows, build = results[deferred][-1]
                way = "built at the end" if deferred else "kept"
                print(f"round {round_no + 1}, index {way}: rows {rows:.1f} s, build {build:.1f} s")
    medians = {
        deferred: [statistics.median(r[i] for r in runs) for i in (0, 1)]
        for deferred, runs in results.items()
    }
    kept, deferred = (sum(medians[False]), sum(medians[True]))
    print(f"\n{args.size:,} rows, {args.rounds} round(s), {os.cpu_count()} CPUs; medians, s")
    print("| index of ids | rows | build | total | rows/s |")
    print("|---|---|---|---|---|")
    for way, key in (("kept up to date", False), ("built at the end", True)):
        rows, build = medians[key]
        total = rows + build
        print(f"| {way} | {rows:.1f} | {build:.1f} | {total:.1f} | {args.size / total:,.0f} |")
    print(f"\nbuilt at the end / kept: {deferred / kept:.2f}x the time")


if __name__ == "__main__":
    main()
