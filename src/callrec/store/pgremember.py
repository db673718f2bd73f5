"""Point reads on PostgreSQL, remembered while nothing changes.

Every request reads its user, and a read or a play (each seek of a player) reads one
recording: rows by primary key, each a round trip and a worker thread's hop. ``Remembered``
keeps such rows for the event loop to use without either, for as long as they are known to
hold:

* every change to the recordings and the users sends a ``NOTIFY callrec_changes`` in its own
  transaction, and a ``LISTEN`` connection per process forgets what it names when one arrives
  (PostgreSQL delivers it at commit, to every process of every server). callrec's own writes
  of recordings name them (``changed_recordings``), and only those are forgotten: a player
  seeking through one recording is not slowed by recorders writing others. Any other change,
  by callrec (users) or by hand, is announced by a trigger of the table (schema 10) and
  forgets every row;
* rows are kept only while that connection is up: when it drops (the database restarts, the
  network fails) nothing is remembered until it listens again;
* whatever happens, nothing is remembered longer than ``REMEMBER_SECONDS``: a change that
  fires no trigger (triggers disabled, ``session_replication_role = replica``) is seen
  again within that time.

A read that overlaps a change never stores what it read: rows are kept only when nothing was
forgotten since the read began.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from typing import Any, Final, TypeVar

import orjson
import psycopg

from callrec.store import UNKNOWN

log = logging.getLogger("callrec.store")

CHANNEL: Final = "callrec_changes"
REMEMBER_SECONDS = 30.0
"""Longest a row is remembered, even when no change is heard of."""
MOST_ROWS = 20_000
"""Rows remembered at most (then all are forgotten, and remembering starts again)."""
_POLL_SECONDS = 0.1  # how soon the listening thread sees that the store closes
_RETRY_SECONDS = 1.0  # between attempts to listen again
_MOST_PAYLOAD = 7900  # bytes of a NOTIFY's payload (PostgreSQL's limit: 8000)
WRITER_FLAG: Final = "callrec.changes_named"
"""Set in a transaction whose changes of recordings a NOTIFY names: the trigger of the table
then stays silent (``changed_recordings``)."""

T = TypeVar("T")


def recording_key(ccid: str, recording_id: str) -> Hashable:
    """What a recording's row is remembered by."""
    return ("r", ccid, recording_id)


def changed_recordings(conn: psycopg.Connection[Any], ccid: str, ids: Sequence[str]) -> None:
    """In a write transaction, before it changes recordings: tell every listening process
    that ``ccid``'s ``ids`` change, and that they are all that change. Too many to name in
    one payload, and the table's trigger tells that everything may have changed."""
    payload = orjson.dumps([ccid, list(ids)])
    if len(payload) <= _MOST_PAYLOAD:
        conn.execute(
            "SELECT set_config(%s, 'on', true), pg_notify(%s, %s)",
            (WRITER_FLAG, CHANNEL, payload.decode()),
        )


def _named(payload: str) -> list[Hashable] | None:
    """The remembered keys a NOTIFY's payload names, or None: forget every row."""
    try:
        ccid, ids = orjson.loads(payload)
        if isinstance(ccid, str) and isinstance(ids, list):
            return [recording_key(ccid, rec_id) for rec_id in ids if isinstance(rec_id, str)]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    return None


class Remembered:
    """Rows by key, kept while a ``LISTEN`` connection to ``url`` hears of every change."""

    def __init__(self, url: str, connect_timeout: int) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._rows: dict[Hashable, Any] = {}
        self._forgettings = itertools.count(1)  # next() is atomic: no forgetting is lost
        self._generation = 0
        self._keeping = threading.Lock()  # a row kept and a forgetting: one after the other
        self.listening = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def peek(self, key: Hashable) -> Any:
        """The row remembered for ``key``, or UNKNOWN."""
        if not self.listening:
            self._start()
            return UNKNOWN
        return self._rows.get(key, UNKNOWN)

    def read(self, key: Hashable, load: Callable[[], T]) -> T:
        """The row for ``key``: remembered, or loaded (blocking) and remembered."""
        generation, row = self._lookup(key)
        if row is UNKNOWN:
            row = load()
            self._keep(generation, key, row)
        return row  # type: ignore[no-any-return]

    async def aread(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``read`` for the event loop: the row loaded by awaiting ``load()``."""
        generation, row = self._lookup(key)
        if row is UNKNOWN:
            row = await load()
            self._keep(generation, key, row)
        return row  # type: ignore[no-any-return]

    def _lookup(self, key: Hashable) -> tuple[int, Any]:
        """The generation of remembered rows (a forgetting while loading, and the row loaded
        is not kept) and the row remembered for ``key``, or UNKNOWN."""
        self._start()
        generation = self._generation  # before the row it vouches for
        return generation, self._rows.get(key, UNKNOWN) if self.listening else UNKNOWN

    def _keep(self, generation: int, key: Hashable, row: Any) -> None:
        with self._keeping:
            if not self.listening or generation != self._generation:
                return
            if len(self._rows) >= MOST_ROWS:
                self._rows = {}
            self._rows[key] = row

    def forget(self, keys: Iterable[Hashable] | None = None) -> None:
        """Forget the rows of ``keys``; every row when None."""
        with self._keeping:
            self._generation = next(self._forgettings)
            if keys is None:
                self._rows = {}
            else:
                for key in keys:
                    self._rows.pop(key, None)

    def token(self) -> bytes | None:
        """Bytes that change whenever remembered rows are forgotten (at every change heard
        of, and at least every ``REMEMBER_SECONDS``); None while not listening."""
        return self._generation.to_bytes(8, "little") if self.listening else None

    def _start(self) -> None:
        """Listen from the first point read on (a command that reads none never connects)."""
        if self._thread is not None or self._stop.is_set():
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="callrec-listen", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=self._connect_timeout
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.forget()
                    self.listening = True
                    forgotten = time.monotonic()
                    while not self._stop.is_set():
                        # Forgets at each change, and at least every REMEMBER_SECONDS.
                        for note in conn.notifies(timeout=_POLL_SECONDS):
                            self.forget(_named(note.payload))
                        if time.monotonic() - forgotten >= REMEMBER_SECONDS:
                            self.forget()
                            forgotten = time.monotonic()
            except psycopg.Error as error:
                if not self._stop.is_set():
                    log.warning("not remembering point reads: %s", type(error).__name__)
            finally:
                self.listening = False
                self.forget()
            self._stop.wait(_RETRY_SECONDS)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_POLL_SECONDS * 5 + self._connect_timeout)
