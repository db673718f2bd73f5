"""Streaming a media file: Range, HEAD, ETag, never the whole file in memory.

The storage is asked for exactly the bytes the client asked for (a ranged read), and only
after it answered are the status and headers sent, so that a failing or slow storage is a
502/504 with a GWS body. The bytes then flow at the client's pace: the next chunk is read
from the storage only once the server took the previous one. A client that goes away stops
the stream and releases the file or the storage connection at once.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio
from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from callrec.api.errors import error_response
from callrec.errors import GWSError, NotFound, StorageUnavailable
from callrec.media import MediaBody, MediaStore
from callrec.media.http import (
    RangeNotSatisfiable,
    content_disposition,
    content_type,
    etag_matches,
    if_range_allows,
    parse_range,
)
from callrec.model import find_media
from callrec.services import Services
from callrec.store import Document

T = TypeVar("T")
log = logging.getLogger("callrec.media")
# Bodies up to this size go out in one or two messages: not worth watching for a disconnect.
WATCH_ABOVE = 512 * 1024


async def play(request: Request, services: Services, doc: Document, media_id: str) -> Response:
    media = find_media(doc, media_id)
    if media is None:
        raise NotFound("Media file not found")
    descriptor = media.get("mediaDescriptor")
    if not isinstance(descriptor, dict):
        raise NotFound("Media file has no content yet")
    store = services.storages.get(descriptor["storage"])
    key = descriptor["path"]
    stat = await _storage_call(store, store.stat(key))
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": stat.etag,
        "Content-Disposition": content_disposition(str(media["mediaId"])),
        "Cache-Control": "private, max-age=0",
        # Media is never a page: no sniffing into HTML, and nothing may run if opened.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    media_type = content_type(media)
    if etag_matches(request.headers.get("if-none-match"), stat.etag):
        return Response(status_code=304, headers=headers)
    byte_range = None
    if if_range_allows(request.headers.get("if-range"), stat.etag):
        try:
            byte_range = parse_range(request.headers.get("range"), stat.size)
        except RangeNotSatisfiable as error:
            response = error_response(error)
            response.headers["Content-Range"] = f"bytes */{stat.size}"
            return response
    start, end = byte_range or (0, stat.size - 1)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{stat.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or end < start:  # HEAD reads no byte from the storage
        return Response(status_code=status, headers=headers, media_type=media_type)
    body = await _storage_call(store, store.open_range(key, start, end))
    return MediaResponse(body, end - start + 1, status, headers, media_type)


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


class MediaResponse(Response):
    """Sends an opened ``MediaBody``: as a file when the server can send files itself (the
    ASGI ``http.response.pathsend`` extension), else chunk by chunk."""

    def __init__(
        self,
        body: MediaBody,
        length: int,
        status_code: int,
        headers: dict[str, str],
        media_type: str,
    ) -> None:
        self.media_body = body
        self.length = length
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
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
            path = self.media_body.path
            if path is not None and "http.response.pathsend" in scope.get("extensions", {}):
                await send({"type": "http.response.pathsend", "path": str(path)})
            elif self.length <= WATCH_ABOVE:
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
