"""What the HTTP storages (WebDAV, S3) share: one streaming ``httpx`` client per storage,
deadlines, the mapping of storage failures to GWS errors, and spooling of uploads.

Failures are logged with the storage's name, the operation and the storage's answer, never
with credentials; API clients only learn that the storage failed (502) or was too slow (504).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

import anyio
import httpx

from callrec.errors import StorageUnavailable
from callrec.media import MediaChanged, MediaMissing, MediaStat, StorageTimeout, UploadTooLarge

log = logging.getLogger("callrec.media")

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
SPOOL_CHUNK = 256 * 1024


def make_client(
    timeout: float,
    *,
    max_connections: int,
    verify: bool | str,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """A pooled client that never follows redirects nor reads proxies or .netrc from the
    environment: requests go only where the operator's configuration says."""
    return httpx.AsyncClient(
        auth=auth,
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        verify=verify,
        follow_redirects=False,
        trust_env=False,
        # Bytes exactly as stored: no transparent decompression, which would also break ranges.
        headers={"Accept-Encoding": "identity"},
    )


class HttpStorage:
    """Sending requests to one storage within the deadline, and reading its answers."""

    name: str

    def __init__(self, name: str, client: httpx.AsyncClient, timeout: float) -> None:
        self.name = name
        self.client = client
        self.timeout = timeout

    async def send(
        self, request: httpx.Request, what: str, *, deadline: bool = True
    ) -> httpx.Response:
        """The storage's answer (headers read, body not), within the deadline.

        An upload (``deadline=False``) sends its whole body before the answer comes: it is
        bounded by the client's per-read/per-write timeouts instead, so that a large file on
        a steady link is never cut off. Raises ``StorageTimeout`` or ``StorageUnavailable``;
        HTTP errors are left to the caller (``check``), which knows which statuses it expects.
        """
        try:
            with anyio.fail_after(self.timeout if deadline else math.inf):
                return await self.client.send(request, stream=True)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("storage %s: %s timed out after %.1f s", self.name, what, self.timeout)
            raise StorageTimeout() from None
        except httpx.HTTPError as error:
            log.warning("storage %s: %s failed: %s", self.name, what, type(error).__name__)
            raise StorageUnavailable() from None

    async def check(
        self, response: httpx.Response, what: str, expected: tuple[int, ...]
    ) -> httpx.Response:
        """``response`` when its status is one of ``expected``; otherwise it is closed and
        404/410 become ``MediaMissing``, anything else ``StorageUnavailable``."""
        if response.status_code in expected:
            return response
        await response.aclose()
        if response.status_code in (404, 410):
            raise MediaMissing()
        log.warning("storage %s: %s answered HTTP %d", self.name, what, response.status_code)
        raise StorageUnavailable()

    async def simple(
        self, request: httpx.Request, what: str, expected: tuple[int, ...], *, deadline: bool = True
    ) -> httpx.Response:
        """Send and read a small answer completely (HEAD, DELETE, PROPFIND, listing, PUT)."""
        response = await self.check(
            await self.send(request, what, deadline=deadline), what, expected
        )
        try:
            with anyio.fail_after(self.timeout):
                await response.aread()
        except (TimeoutError, httpx.TimeoutException):
            raise StorageTimeout() from None
        except httpx.HTTPError:
            raise StorageUnavailable() from None
        finally:
            await response.aclose()
        return response

    async def open_body(
        self,
        request: httpx.Request,
        what: str,
        start: int,
        end: int,
        expected: MediaStat | None = None,
    ) -> HttpBody:
        """Send a ranged GET and check that the storage answered with exactly the bytes
        ``start..end``: a storage that ignores ``Range`` is never read whole. With the
        ``expected`` stat, also that they are of that file: same size and, where the answer
        has a strong entity tag, the same one (a file replaced since would otherwise be sent
        under the other one's headers)."""
        response = await self.check(await self.send(request, what), what, (206,))
        match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        if not match or (int(match.group(1)), int(match.group(2))) != (start, end):
            await response.aclose()
            log.warning("storage %s: %s answered another byte range", self.name, what)
            raise StorageUnavailable()
        tag = response.headers.get("etag", "")
        if expected is not None and (
            match.group(3) != str(expected.size) or (_strong(tag) and tag != expected.etag)
        ):
            await response.aclose()
            raise MediaChanged()
        return HttpBody(self.name, response, end - start + 1)

    async def aclose(self) -> None:
        await self.client.aclose()


class HttpBody:
    """The body of a storage's answer, streamed as the client consumes it."""

    def __init__(self, storage: str, response: httpx.Response, length: int) -> None:
        self._storage = storage
        self._response = response
        self._remaining = length

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                self._remaining -= len(chunk)
                if self._remaining < 0:
                    raise httpx.RemoteProtocolError("more bytes than asked for")
                yield chunk
        except httpx.TimeoutException:
            log.warning("storage %s: reading media timed out", self._storage)
            raise StorageTimeout() from None
        except httpx.HTTPError as error:
            log.warning("storage %s: reading media failed: %s", self._storage, error)
            raise StorageUnavailable() from None
        if self._remaining:
            log.warning("storage %s: media body ended early", self._storage)
            raise StorageUnavailable()

    async def aclose(self) -> None:
        # Closing a response that was not read to the end drops its connection instead of
        # returning it to the pool: the storage stops sending at once.
        await self._response.aclose()


def stat_from_headers(response: httpx.Response) -> MediaStat:
    """Size and a strong entity tag from a HEAD answer (synthesised when the storage gives
    none, or only a weak one, so that ``If-Range`` still works)."""
    try:
        size = int(response.headers["content-length"])
    except (KeyError, ValueError):
        raise StorageUnavailable() from None
    etag = response.headers.get("etag", "")
    if not _strong(etag):
        stamp = response.headers.get("last-modified", "") + etag
        etag = f'"{hashlib.sha256(stamp.encode()).hexdigest()[:16]}-{size:x}"'
    return MediaStat(size=size, etag=etag)


def _strong(etag: str) -> bool:
    return etag.startswith('"') and etag.endswith('"') and len(etag) > 2


@dataclass
class Spooled:
    """An upload held in a temporary file until it is complete, so that the storage gets a
    ``Content-Length`` (and S3 a payload hash) and never a half-received file."""

    file: IO[bytes]
    size: int
    sha256: str

    def content(self) -> Callable[[], AsyncIterator[bytes]]:
        async def read() -> AsyncIterator[bytes]:
            await anyio.to_thread.run_sync(self.file.seek, 0)
            while chunk := await anyio.to_thread.run_sync(self.file.read, SPOOL_CHUNK):
                yield chunk

        return read


@asynccontextmanager
async def spooled(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[Spooled]:
    digest = hashlib.sha256()
    size = 0
    with tempfile.TemporaryFile(prefix="callrec-upload-") as file:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge()
            await anyio.to_thread.run_sync(_append, file, digest, chunk)
        yield Spooled(file, size, digest.hexdigest())


def _append(file: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    file.write(chunk)
