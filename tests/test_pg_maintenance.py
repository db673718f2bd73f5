"""PostgreSQL maintenance is not bound by the query timeout.

Queries run under ``statement_timeout`` (the store's timeout): a stalled database gives a
clear error rather than a hung request. Sampling statistics after an import of tens of
millions of recordings takes longer than that, and must still finish: at 10M recordings
``ANALYZE recording_names`` outran a 5 s timeout and failed the import's last step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from callrec.store import open_store

TIMEOUT = 0.5  # the store's query timeout, seconds


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    from pgserver import fresh_schema

    with fresh_schema(pg_server) as url:
        yield url


def test_statistics_outlast_the_query_timeout(pg_url: str) -> None:
    store = open_store(pg_url, timeout=TIMEOUT)
    outcome: list[BaseException | None] = []
    try:
        with psycopg.connect(pg_url) as other:
            # ANALYZE waits for this lock: it takes longer than any query may, as a large
            # table's sampling does.
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
