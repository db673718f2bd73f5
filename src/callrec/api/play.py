"""Streaming a media file: Range, HEAD, ETag, never the whole file in memory.

The storage is asked for exactly the bytes the client asked for (a ranged read), and only
after it answered are the status and headers sent, so that a failing or slow storage is a
502/504 with a GWS body. The bytes then flow at the client's pace: the next chunk is read
from the storage only once the server took the previous one. A client that goes away stops
the stream and releases the file or the storage connection at once.

A local store on a disk file system (``LocalMediaStore.on_loop``) is played without a hop:
the file is opened (or found open) and checked, and a range of up to ``ONE_SHOT`` bytes that
the page cache holds is read at once and answered in two messages (head and body), from
header lines built once per media file. A seeking player sends a request per seek, so this
is the request that counts; ``bench/media.py`` measures it beside nginx.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import anyio
from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from callrec.api.errors import error_response
from callrec.errors import GWSError, NotFound, StorageUnavailable
from callrec.media import MediaBody, MediaChanged, MediaStore
from callrec.media.http import (
    RangeNotSatisfiable,
    content_disposition,
    content_type,
    etag_matches,
    if_range_allows,
    parse_range,
)
from callrec.media.local import CHUNK, LocalBody, LocalMediaStore, etag, read_cached
from callrec.model import find_media
from callrec.services import Services
from callrec.store import Document

T = TypeVar("T")
Headers = list[tuple[bytes, bytes]]
log = logging.getLogger("callrec.media")
# Bodies up to this size go out in one or two messages: not worth watching for a disconnect.
WATCH_ABOVE = 512 * 1024
# Local ranges up to this size are read at once and sent as one message (one chunk's worth:
# no more memory per request than a stream holds).
ONE_SHOT = CHUNK


async def play(request: Request, services: Services, doc: Document, media_id: str) -> Response:
    media = find_media(doc, media_id)
    if media is None:
        raise NotFound("Media file not found")
    descriptor = media.get("mediaDescriptor")
    if not isinstance(descriptor, dict):
        raise NotFound("Media file has no content yet")
    store = services.storages.get(descriptor["storage"])
    key = descriptor["path"]
    asked = _Asked(request.scope)
    if isinstance(store, LocalMediaStore) and store.on_loop:
        try:
            return store.use_file(
                key, lambda fd, st, _path: _play_local(store, media, asked, fd, st)
            )
        except OSError as error:
            log.warning("storage %s: %s", store.name, error)
            raise StorageUnavailable() from None
    for attempt in range(2):
        stat = await _storage_call(store, store.stat(key))
        answer = _answer(media, asked, stat.size, stat.etag)
        if isinstance(answer, Response):
            return answer
        status, start, end, headers = answer
        if asked.head or end < start:  # HEAD reads no byte from the storage
            return RawResponse(status, headers)
        try:
            body = await _storage_call(store, store.open_range(key, start, end, stat))
        except MediaChanged:  # replaced since its stat: answered again from a fresh one
            if attempt:
                log.warning("storage %s: %s changed while it was being opened", store.name, key)
                raise
            continue
        return MediaResponse(body, end - start + 1, status, headers)
    raise AssertionError("unreachable")


def _play_local(
    store: LocalMediaStore,
    media: Mapping[str, Any],
    asked: _Asked,
    fd: int,
    st: os.stat_result,
) -> Response:
    """Play from a local file open as ``fd`` (lent: read now, or ``dup`` it to stream)."""
    answer = _answer(media, asked, st.st_size, etag(st))
    if isinstance(answer, Response):
        return answer
    status, start, end, headers = answer
    length = end - start + 1
    if asked.head or length <= 0:
        return RawResponse(status, headers)
    if length <= ONE_SHOT:
        data = read_cached(fd, length, start)
        if data is not None and len(data) == length:
            return RawResponse(status, headers, data)
    # Larger, or not in the page cache (read in a worker thread), or the file shrank since
    # the stat (the stream then aborts rather than send a short body): streamed from the
    # descriptor the headers were made from. Not handed to the server by its path (ASGI's
    # pathsend): it opens the path after the headers are sent, and a file replaced meanwhile
    # went out whole under the headers (size, entity tag) of the one it replaced.
    body = LocalBody(os.dup(fd), start, end, store)
    return MediaResponse(body, length, status, headers)


class _Asked:
    """The request's method and conditional headers, read in one pass over the headers
    (the first of a repeated header counts, as ``request.headers.get`` has it)."""

    __slots__ = ("head", "if_none_match", "if_range", "range")

    def __init__(self, scope: Scope) -> None:
        self.head = scope["method"] == "HEAD"
        self.range: str | None = None
        self.if_range: str | None = None
        self.if_none_match: str | None = None
        for name, value in scope["headers"]:
            if name == b"range":
                if self.range is None:
                    self.range = value.decode("latin-1")
            elif name == b"if-range":
                if self.if_range is None:
                    self.if_range = value.decode("latin-1")
            elif name == b"if-none-match" and self.if_none_match is None:
                self.if_none_match = value.decode("latin-1")


def _answer(
    media: Mapping[str, Any], asked: _Asked, size: int, tag: str
) -> Response | tuple[int, int, int, Headers]:
    """A complete answer (304, 416), or the status, inclusive byte range and headers of the
    bytes to send."""
    fixed, kind = _media_headers(
        str(media["mediaId"]), str(media.get("type") or ""), bool(media.get("pkcs7"))
    )
    headers = [(b"accept-ranges", b"bytes"), (b"etag", tag.encode("latin-1")), *fixed]
    if etag_matches(asked.if_none_match, tag):
        return RawResponse(304, headers)
    byte_range = None
    if if_range_allows(asked.if_range, tag):
        try:
            byte_range = parse_range(asked.range, size)
        except RangeNotSatisfiable as error:
            response = error_response(error)
            response.headers["Content-Range"] = f"bytes */{size}"
            return response
    if byte_range is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = byte_range, 206
        headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
    headers.append((b"content-length", str(end - start + 1).encode()))
    headers.append((b"content-type", kind))
    return status, start, end, headers


@functools.lru_cache(maxsize=4096)
def _media_headers(media_id: str, declared: str, encrypted: bool) -> tuple[Headers, bytes]:
    """The header lines every answer about this media file carries (but ETag), and its
    Content-Type: worked out once, not per seek."""
    fixed = [
        (b"content-disposition", content_disposition(media_id).encode("latin-1")),
        (b"cache-control", b"private, max-age=0"),
        # Media is never a page: no sniffing into HTML, and nothing may run if opened.
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"sandbox; default-src 'none'"),
    ]
    kind = content_type({"mediaId": media_id, "type": declared, "pkcs7": encrypted})
    return fixed, kind.encode("latin-1")


async def _storage_call(store: MediaStore, call: Coroutine[Any, Any, T]) -> T:
    """A storage operation; operating-system failures of a local store become a 502 (the
    details go to the log, never to the client)."""
    try:
        return await call
    except GWSError:
        raise
    except OSError as error:
        log.warning("storage %s: %s", store.name, error)
        raise StorageUnavailable() from None


class RawResponse(Response):
    """A complete response from header lines as the server takes them: one message for the
    status and headers, one for the body (none for a HEAD request, which the server knows)."""

    def __init__(self, status_code: int, headers: Headers, body: bytes = b"") -> None:
        self.status_code = status_code
        self.raw_headers = headers
        self.body = body
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body})


class MediaResponse(Response):
    """Sends an opened ``MediaBody`` chunk by chunk. ``headers`` are header
    lines as the server takes them, or a mapping (then ``media_type`` is the Content-Type)."""

    def __init__(
        self,
        body: MediaBody,
        length: int,
        status_code: int,
        headers: Headers | Mapping[str, str],
        media_type: str | None = None,
    ) -> None:
        self.media_body = body
        self.length = length
        self.status_code = status_code
        self.background = None
        if isinstance(headers, list):
            self.raw_headers = headers
        else:
            self.media_type = media_type
            self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            if self.length <= WATCH_ABOVE:
                await self._send_body(send)
            else:
                await self._send_body_watched(receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.media_body.aclose()

    async def _send_body(self, send: Send) -> None:
        remaining = self.length
        async for chunk in self.media_body:
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
            if remaining <= 0:
                return
            # Let other tasks (and the disconnect watcher) run even when neither the file
            # nor the client ever made this task wait.
            await anyio.lowlevel.checkpoint()
        # The storage sent less than it announced: abort, so that the client sees a cut
        # response rather than a complete-looking short one.
        raise StorageUnavailable("Media file ended early")

    async def _send_body_watched(self, receive: Receive, send: Send) -> None:
        """Stream until done or until the client disconnects, whichever comes first: a
        disconnect cancels the stream even while it waits for a slow storage."""
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._send_body(send)
            group.cancel_scope.cancel()
