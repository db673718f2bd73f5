"""The ``MediaStore`` protocol: where the bytes of media files live.

A store is addressed by keys (relative paths); it stats, opens byte ranges, stores uploads,
deletes and lists. Implementations (``local``, ``webdav``, ``s3``) are chosen by
configuration (``callrec.media.config``); the play route never knows which one it talks to.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from callrec.errors import InvalidParameter, NotFound, StorageUnavailable

StorageKind = Literal["local", "webdav", "s3"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MediaMissing(NotFound):
    """The storage holds no file under that key."""

    default_message = "Media file not found"


class StorageTimeout(StorageUnavailable):
    """The storage did not answer within ``CALLREC_STORAGE_TIMEOUT``."""

    http_status, default_message = 504, "Media storage timed out"


class UploadTooLarge(InvalidParameter):
    http_status, default_message = 413, "The media file is larger than the upload limit"


def key_parts(key: str) -> list[str]:
    """The path segments of a storage key; refuses keys that could leave the storage root."""
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or _CONTROL.search(key)
        or any(p in ("", ".", "..") or p.startswith(".incoming") for p in parts)
    ):
        raise InvalidParameter("media path is not a valid relative path")
    return parts


@dataclass(frozen=True, slots=True)
class MediaStat:
    size: int
    etag: str


class MediaChanged(StorageUnavailable):
    """The file was replaced between its ``stat`` and the read of its bytes."""


class MediaBody(Protocol):
    """An opened byte range: the storage has answered, the bytes are still to be read.

    Iterating yields the bytes in bounded chunks, each read only when the previous one was
    consumed (so a slow client slows the storage down instead of filling memory).
    ``aclose`` releases the file or the upstream connection, also when the body was not
    read to the end (the client went away).
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class MediaStore(Protocol):
    """One storage of media files."""

    name: str
    kind: StorageKind

    async def stat(self, key: str) -> MediaStat:
        """Size and entity tag of the file; raises ``MediaMissing``, ``StorageUnavailable``."""

    async def open_range(
        self, key: str, start: int, end: int, expected: MediaStat | None = None
    ) -> MediaBody:
        """Open bytes ``start..end`` inclusive for streaming: a ranged read on the storage,
        never the whole file. Failures (missing file, storage down or slow) are raised here,
        before any byte is sent; ``MediaChanged`` when the file is no longer the one
        ``expected`` describes (its ``stat``, which the answer's headers were made from)."""

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Store a file durably from a stream; returns its size. Nothing is left on failure."""

    async def delete(self, key: str) -> None:
        """Remove the file; missing files are not an error."""

    def list_files(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """Every file as (key, size), under ``prefix`` (a key prefix ending in ``/``)."""

    def claim_url(self, location: str) -> str | None:
        """The key of ``location`` (a URL, or for WebDAV an absolute path on the server) when
        it lies inside this storage, else None. Pure: nothing is fetched."""

    def claim_object(self, bucket: str, key: str) -> str | None:
        """The key of object ``key`` of S3 bucket ``bucket`` when this storage is that
        bucket, else None."""

    async def aclose(self) -> None:
        """Release connections; the store is not used afterwards."""
