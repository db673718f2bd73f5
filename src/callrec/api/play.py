"""Streaming a media file: Range, HEAD, ETag, never the whole file in memory."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response, StreamingResponse

from callrec.api.errors import error_response
from callrec.errors import NotFound
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


async def play(request: Request, services: Services, doc: Document, media_id: str) -> Response:
    media = find_media(doc, media_id)
    if media is None:
        raise NotFound("Media file not found")
    descriptor = media.get("mediaDescriptor")
    if not isinstance(descriptor, dict):
        raise NotFound("Media file has no content yet")
    store = services.storages.get(descriptor["storage"])
    key = descriptor["path"]
    stat = await store.stat(key)
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": stat.etag,
        "Content-Disposition": content_disposition(str(media["mediaId"])),
        "Cache-Control": "private, max-age=0",
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
    if request.method == "HEAD" or end < start:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(
        store.open_range(key, start, end),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )
