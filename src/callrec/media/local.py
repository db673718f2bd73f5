"""The local media directory: the embedded default storage."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from callrec.errors import InvalidParameter
from callrec.media import MediaMissing, MediaStat, key_parts

CHUNK = 256 * 1024


class UploadTooLarge(InvalidParameter):
    http_status, default_message = 413, "The media file is larger than the upload limit"


class LocalMediaStore:
    """Files under one directory; keys are relative paths that may not leave it."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tmp = self.root / ".incoming"

    def path(self, key: str) -> Path:
        """The file for ``key``; raises ``InvalidParameter`` for keys leaving the directory."""
        path = self.root.joinpath(*key_parts(key))
        # A symlink inside the store (the file or any directory above it) must not lead
        # out of it either.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidParameter("media path is not a valid relative path")
        return path

    async def stat(self, key: str) -> MediaStat:
        try:
            st = await anyio.to_thread.run_sync(os.stat, self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise MediaMissing() from None
        return MediaStat(size=st.st_size, etag=f'"{st.st_mtime_ns:x}-{st.st_size:x}"')

    async def open_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            handle = await anyio.open_file(self.path(key), "rb")
        except FileNotFoundError:
            raise MediaMissing() from None
        async with handle:
            await handle.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await handle.read(min(CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        target = self.path(key)
        await anyio.to_thread.run_sync(lambda: self._tmp.mkdir(parents=True, exist_ok=True))
        tmp = self._tmp / uuid.uuid4().hex
        size = 0
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge()
                    await out.write(chunk)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            await anyio.to_thread.run_sync(_publish, tmp, target)
        finally:
            await anyio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        return size

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(lambda: self.path(key).unlink(missing_ok=True))


def _publish(tmp: Path, target: Path) -> None:
    """Move a complete, synced file into place and sync the directory entry too."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
