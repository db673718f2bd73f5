"""The ``RecordingStore`` protocol: recordings and users in domain terms.

One implementation per backend holds its own SQL; nothing outside this package speaks SQL.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from callrec.doccodec import decode
from callrec.errors import GWSError
from callrec.model import IndexKeys, Stored, merge_stored
from callrec.query import RecordingQuery, parse_instant

log = logging.getLogger(__name__)
Document = dict[str, Any]
# Keyset position in the search order: (startTime in epoch ms, id).
SearchKey = tuple[int, str]


class Unknown(enum.Enum):
    """What a point read on the event loop gives when answering would mean waiting."""

    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN


def search_key(doc: Document) -> SearchKey:
    """Where a stored recording sits in the search order."""
    return parse_instant(doc["startTime"], "startTime"), doc["id"]


def indexed_columns(keys: IndexKeys) -> tuple[Any, ...]:
    """A recording row's columns from ``region`` to ``dialed_rev``, in the order both stores'
    ``recordings`` tables have them."""
    return (
        keys.region,
        keys.start_ms,
        keys.stop_ms,
        keys.caller,
        keys.dialed,
        keys.caller[::-1],
        keys.dialed[::-1],
    )


def merged_repeats(rec_id: str, blobs: Sequence[bytes]) -> Stored | None:
    """The stored forms of a recording that a load without the index of ids stored more
    than once, merged in the order given, as a load with the index merges them line by line:
    what to write over the first (None: the first as it is). A repeat in exactly the form
    merged so far (a file loaded twice) changes nothing; one that does not merge (none can
    between two complete recordings) is left out, as a line that fails, with a warning."""
    docs: dict[bytes, dict[str, Any]] = {}  # each stored form decoded once

    def doc(blob: bytes) -> dict[str, Any]:
        if blob not in docs:
            docs[blob] = decode(blob)
        return docs[blob]

    current = blobs[0]  # the stored form of what is merged so far
    merged: Stored | None = None
    for blob in blobs[1:]:
        if blob == current:  # merging it gives it back
            continue
        try:
            merged = merge_stored(doc(blobs[0]) if merged is None else merged, doc(blob))
        except GWSError as error:
            log.warning("recording %r stored twice does not merge: %s", rec_id, error.message)
            continue
        current = merged.packed
    return merged


@dataclass(frozen=True, slots=True)
class User:
    """An account: a contact-center user with one role, or an OPS account (``ccid`` None)."""

    name: str
    password_hash: str
    role: str  # admin | supervisor | agent | ops
    ccid: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class DocumentSearch:
    """``RecordingStore.search`` for a store that implements ``search_stored``."""

    search_stored: Callable[..., list[bytes]]

    def search(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[Document]:
        found = self.search_stored(ccid, query, limit=limit, after=after, region=region)
        return [decode(blob) for blob in found]


class RecordingStore(Protocol):
    """Where recordings and accounts live. Methods are blocking; call them off the event loop,
    except ``peek_stored`` and ``peek_user``, which never wait on anything but the local
    disk."""

    schema_version: int
    # Recordings an import hands to ``load`` at once (one transaction).
    load_size: int

    def get(self, ccid: str, recording_id: str, region: str | None = None) -> Document | None:
        """The recording as stored, or None (also when it is of another region)."""

    def peek_stored(
        self, ccid: str, recording_id: str, region: str | None = None
    ) -> bytes | Unknown | None:
        """``get``, on the event loop, in the stored form (``doccodec.decode`` reads it):
        UNKNOWN when the answer would mean waiting (then await ``fetch_stored``)."""

    async def fetch_stored(
        self, ccid: str, recording_id: str, region: str | None = None
    ) -> bytes | None:
        """``peek_stored``, awaited on the event loop when it gave UNKNOWN (PostgreSQL: on a
        connection of the loop's own, see ``pgloop``)."""

    def search(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[Document]:
        """Up to ``limit`` matches sorted by (startTime, id), strictly after ``after``."""

    def search_stored(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[bytes]:
        """``search``, in the stored form (``doccodec.decode`` reads it): what a page's
        recordings are rendered from, or taken already rendered (``api.search``)."""

    def upsert(self, ccid: str, recordings: Sequence[Document]) -> list[Document | GWSError]:
        """Create or merge each recording in one durable transaction.

        Returns, per input, the merged document or the error that kept that one item out
        (the others are still written). Returns only once the transaction is on disk.
        """

    def load(self, ccid: str, recordings: Sequence[Document | Stored]) -> list[GWSError | None]:
        """``upsert`` for an import: a ``Stored`` item is ``model.to_store(None, doc)``
        computed ahead, written as it is when nothing is stored under its id yet (and merged
        as ``doc`` otherwise). Returns, per input, the error that kept it out or None.
        """

    def bulk_load(self) -> AbstractContextManager[bool]:
        """Around a large import: the store may defer index upkeep until the end. Yields
        whether it does (searches are slow meanwhile)."""

    def delete(self, ccid: str, recording_id: str) -> Document | None:
        """Remove a recording and return what it was, or None when there was none."""

    def iter_recordings(self, ccid: str | None = None) -> Iterator[tuple[str, Document]]:
        """Every recording as (ccid, document), for maintenance commands."""

    def get_user(self, name: str) -> User | None: ...

    def peek_user(self, name: str) -> User | Unknown | None:
        """``get_user``, on the event loop, as ``peek`` is ``get``."""

    def change_token(self) -> bytes | None:
        """Bytes equal to an earlier answer only while what ``peek_stored`` and ``peek_user``
        remember still holds (SQLite: nothing committed in between, by any process;
        PostgreSQL: no change heard of, for at most ``pgremember.REMEMBER_SECONDS``); None
        when the store cannot tell without waiting. Read it *before* the reads it vouches
        for."""

    def list_users(self) -> list[User]: ...

    def put_user(self, user: User) -> None:
        """Create or replace an account."""

    def delete_user(self, name: str) -> bool: ...

    def secret(self, name: str) -> bytes:
        """A random key kept in the database, made on first use and shared by all processes."""

    def optimize(self) -> None:
        """Refresh the query planner's statistics (after bulk loads); PostgreSQL also
        vacuums, so that index-only scans read no table rows."""

    def ping(self) -> None:
        """Raise when the database cannot be reached."""

    def close(self) -> None: ...


def open_store(url: str, *, pool_size: int = 10, timeout: float = 5.0) -> RecordingStore:
    """The store for a database URL (``sqlite:///PATH`` or ``postgresql://...``), migrated."""
    if url.startswith("sqlite:///"):
        from callrec.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from callrec.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size, timeout=timeout)
    raise ValueError("unsupported database URL (expected sqlite:///PATH or postgresql://...)")
