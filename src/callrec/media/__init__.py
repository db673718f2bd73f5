"""The ``MediaStore`` protocol: where the bytes of media files live.

A store is addressed by keys (relative paths); it stats, streams byte ranges, stores uploads
and deletes. Implementations are chosen by configuration; the play route never knows which.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from callrec.errors import InvalidParameter, NotFound


class MediaMissing(NotFound):
    """The storage holds no file under that key."""

    default_message = "Media file not found"


def key_parts(key: str) -> list[str]:
    """The path segments of a storage key; refuses keys that could leave the storage root."""
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or any(p in ("", ".", "..") or p.startswith(".incoming") for p in parts)
        or any(ord(c) < 0x20 or c == "\x7f" for c in key)
    ):
        raise InvalidParameter("media path is not a valid relative path")
    return parts


@dataclass(frozen=True, slots=True)
class MediaStat:
    size: int
    etag: str


class MediaStore(Protocol):
    """One storage of media files."""

    name: str

    async def stat(self, key: str) -> MediaStat:
        """Size and entity tag of the file; raises ``MediaMissing``."""

    def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes ``start..end`` inclusive, in chunks, never the whole file at once."""

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Store a file durably from a stream; returns its size. Nothing is left on failure."""

    async def delete(self, key: str) -> None:
        """Remove the file; missing files are not an error."""
