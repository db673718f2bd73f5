"""Point reads on PostgreSQL without leaving the event loop.

A read of one recording by key is a round trip of a fraction of a millisecond. Made from a
worker thread (the pool's way), it also costs the hop there and back, the thread and the
event loop taking turns at the GIL, and a pool checkout: about twice the work of the read.
``LoopReads`` keeps one connection of its own for the event loop that uses it and awaits the
read there; the loop serves other requests while the database answers.

The connection belongs to one event loop. Used from another (tests start several), it is
dropped and a new one made for that loop. Reads share the one connection in turn, so only
point reads by key use it: each is answered in well under a millisecond, and the store's
``statement_timeout`` (the pool's session settings, run on each new connection) and a
timeout on the whole read bound the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from callrec.errors import DatabaseUnavailable


class LoopReads:
    """One connection to ``url`` for single-row reads on the event loop using it."""

    def __init__(self, url: str, timeout: float, session: Sequence[str] = ()) -> None:
        self._url = url
        self._timeout = timeout
        self._session = session  # statements each new connection runs first
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting = asyncio.Lock()

    async def fetchone(self, query: str, params: tuple[Any, ...]) -> Any:
        """The first row of ``query`` (None when there is none); DatabaseUnavailable when
        the database fails or does not answer within the timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._connection()
                cursor = await conn.execute(query, params)
                return await cursor.fetchone()
        except (psycopg.OperationalError, TimeoutError) as error:
            # Broken, or silent for the whole timeout: the next read connects anew. (A read
            # cancelled otherwise is psycopg's to clean up: it cancels the query server-side
            # and keeps the connection, which other reads may be waiting for.)
            self._drop()
            raise DatabaseUnavailable() from error

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._drop()
            self._loop, self._connecting = loop, asyncio.Lock()
        async with self._connecting:  # the first reads of a loop make one connection
            conn = self._conn
            if conn is None or conn.closed:
                self._conn = conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=max(2, int(self._timeout))
                )
                # A failure here drops the connection as a failed read does.
                for statement in self._session:
                    await conn.execute(statement)
        return conn

    def _drop(self) -> None:
        """Close the connection at once, from any thread or loop (no await needed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()

    def close(self) -> None:
        self._drop()
