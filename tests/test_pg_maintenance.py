"""PostgreSQL maintenance after an import: not bound by the query timeout, and it leaves
the tables' pages marked all-visible.

Queries run under ``statement_timeout`` (the store's timeout): a stalled database gives a
clear error rather than a hung request. Sampling statistics after an import of tens of
millions of recordings takes longer than that, and must still finish: at 10M recordings
``ANALYZE recording_names`` outran a 5 s timeout and failed the import's last step.
"""

from __future__ import annotations

import threading
import time

import psycopg

from callrec.store import open_store
from conftest import local_recording

TIMEOUT = 0.5  # the store's query timeout, seconds


def test_statistics_outlast_the_query_timeout(pg_url: str) -> None:
    store = open_store(pg_url, timeout=TIMEOUT)
    outcome: list[BaseException | None] = []
    try:
        with psycopg.connect(pg_url) as other:
            # VACUUM and ANALYZE wait for this lock: they take longer than any query may, as
            # a large table's do.
            other.execute("LOCK TABLE recording_names IN SHARE UPDATE EXCLUSIVE MODE")

            def optimize() -> None:
                try:
                    store.optimize()
                    outcome.append(None)
                except BaseException as error:  # reported by the assertion below
                    outcome.append(error)

            worker = threading.Thread(target=optimize)
            worker.start()
            time.sleep(3 * TIMEOUT)
            assert outcome == []  # still waiting, not failed
            other.rollback()  # releases the lock
        worker.join(10)
        assert outcome == [None]
    finally:
        store.close()


def test_optimize_vacuums_and_analyzes_both_tables(pg_url: str) -> None:
    """Index-only scans (names, a number's range) read no table row once a vacuum has marked
    the pages all-visible: a bulk load leaves them unmarked until autovacuum comes by."""
    store = open_store(pg_url)
    try:
        store.upsert("cc1", [local_recording(f"r{i}") for i in range(200)])
        store.optimize()
        with psycopg.connect(pg_url) as conn:
            for table in ("recordings", "recording_names"):
                vacuumed, analyzed = conn.execute(
                    "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables"
                    " WHERE relid = to_regclass(%s)",
                    (table,),
                ).fetchone()
                assert vacuumed is not None, table
                assert analyzed is not None, table
    finally:
        store.close()
