"""Recordings read on the event loop from PostgreSQL (store/pgloop): the same answers as the
blocking read, a connection per event loop, and failures as GWS errors that do not last."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from callrec.doccodec import decode
from callrec.errors import DatabaseUnavailable
from callrec.store import RecordingStore, open_store
from callrec.store.pgloop import LoopReads
from conftest import local_recording

CCID = "cc1"


@pytest.fixture
def store(pg_url: str) -> Iterator[RecordingStore]:
    opened = open_store(pg_url)
    try:
        yield opened
    finally:
        opened.close()


def test_reads_on_the_loop_answer_as_the_blocking_read(store: RecordingStore) -> None:
    store.upsert(CCID, [local_recording("r1")])

    async def reads() -> list[Any]:
        return [
            await store.fetch_stored(CCID, "r1"),
            await store.fetch_stored(CCID, "r1", "elsewhere"),
            await store.fetch_stored(CCID, "missing"),
            await store.fetch_stored("cc2", "r1"),  # another contact center's id: not there
        ]

    found, other_region, missing, other_tenant = asyncio.run(reads())
    assert found is not None
    assert decode(found) == store.get(CCID, "r1")
    assert decode(found)["id"] == "r1"
    assert (other_region, missing, other_tenant) == (None, None, None)


def test_each_event_loop_gets_a_connection_of_its_own(pg_url: str) -> None:
    reads = LoopReads(pg_url, timeout=5.0)
    try:
        first = asyncio.run(reads.fetchone("SELECT pg_backend_pid()", ()))
        again = asyncio.run(reads.fetchone("SELECT pg_backend_pid()", ()))
        # the first loop's connection was closed, not left open (pytest turns a leaked
        # connection's warning into an error)
        assert first != again
    finally:
        reads.close()


def test_the_loop_connection_has_the_pool_session_settings(store: RecordingStore) -> None:
    reads: LoopReads = store._loop_reads  # type: ignore[attr-defined]
    setting = asyncio.run(reads.fetchone("SHOW statement_timeout", ()))
    assert setting == ("5s",)


def test_a_dropped_connection_fails_one_read_then_reconnects(pg_url: str) -> None:
    reads = LoopReads(pg_url, timeout=5.0)

    async def scenario() -> list[Any]:
        (pid,) = await reads.fetchone("SELECT pg_backend_pid()", ())
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        outcomes: list[Any] = []
        for _ in range(2):
            try:
                outcomes.append(await reads.fetchone("SELECT pg_backend_pid()", ()))
            except DatabaseUnavailable as error:
                outcomes.append(error)
        return outcomes

    try:
        failed, recovered = asyncio.run(scenario())
    finally:
        reads.close()
    assert isinstance(failed, DatabaseUnavailable)
    assert failed.body() == {"statusCode": 4, "statusMessage": "Database unavailable"}
    assert isinstance(recovered, tuple)
    assert recovered[0] > 0


def test_a_database_that_never_answers_is_unavailable_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        reads = LoopReads(f"postgresql://callrec:secret@127.0.0.1:{port}/callrec", timeout=0.5)
        began = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as raised:
            asyncio.run(reads.fetchone("SELECT 1", ()))
        reads.close()
    assert time.monotonic() - began < 5
    assert "secret" not in str(raised.value.body())


def test_a_cancelled_read_leaves_the_connection_to_the_next(pg_url: str) -> None:
    """A request cancelled mid-read (its task cancelled) must not fail the reads queued
    behind it on the shared connection."""
    reads = LoopReads(pg_url, timeout=5.0)

    async def scenario() -> tuple[Any, Any, Any]:
        (before,) = await reads.fetchone("SELECT pg_backend_pid()", ())
        slow = asyncio.create_task(reads.fetchone("SELECT pg_sleep(10)", ()))
        queued = asyncio.create_task(reads.fetchone("SELECT pg_backend_pid()", ()))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        (after,) = await queued
        return before, after, await reads.fetchone("SELECT 1", ())

    try:
        began = time.monotonic()
        before, after, one = asyncio.run(scenario())
    finally:
        reads.close()
    assert before == after  # the same connection served the queued read
    assert one == (1,)
    assert time.monotonic() - began < 5  # the server-side query was cancelled, not awaited
