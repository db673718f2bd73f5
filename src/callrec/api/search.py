"""Search with keyset paging, shared by the external and the ops API."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from callrec.api.errors import GWSResponse
from callrec.doccodec import decode
from callrec.errors import InvalidParameter
from callrec.model import is_safe_name
from callrec.query import MAX_INSTANT_MS, MIN_INSTANT_MS, parse_query
from callrec.services import Services
from callrec.store import Document, SearchKey, search_key

View = Callable[[Document, str], Document]  # a recording shown, with its play URLs' base


class SearchParams(BaseModel):
    """The search parameters, declared for the OpenAPI description (parsing is ``parse_query``)."""

    callerPhoneNumber: str | None = Field(
        None, description="Caller number (ANI); alphanumerics compared, `*` is a wildcard."
    )
    dialedPhoneNumber: str | None = Field(
        None, description="Dialed number (DNIS); alphanumerics compared, `*` is a wildcard."
    )
    startTime: str | None = Field(
        None, description="Started at or after: epoch ms, ISO-8601 or yyyy-MM-dd."
    )
    endTime: str | None = Field(
        None, description="Stopped at or before: epoch ms, ISO-8601 or yyyy-MM-dd."
    )
    userName: str | None = Field(
        None,
        description="Contact userName/firstName/lastName, case-insensitive; `*` wildcard; "
        "space = OR, `AND` = AND.",
    )
    limit: str | None = Field(None, description="Results per page (default 100).")
    cursor: str | None = Field(None, description="Opaque position from a `Link` next URL.")


SearchQuery = Annotated[SearchParams, Query()]


def encode_cursor(doc: Document) -> str:
    key = list(search_key(doc))
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(value: str) -> SearchKey:
    try:
        start, rec_id = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidParameter("cursor is not valid") from None
    if (
        type(start) is not int
        or not MIN_INSTANT_MS <= start <= MAX_INSTANT_MS
        or not isinstance(rec_id, str)
        or not is_safe_name(rec_id)  # an id as stored (no NUL, which PostgreSQL refuses)
    ):
        raise InvalidParameter("cursor is not valid")
    return start, rec_id


def parse_limit(value: str | None, default: int, maximum: int) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 6 and 1 <= int(value) <= maximum):
        raise InvalidParameter(f"limit must be an integer from 1 to {maximum}")
    return int(value)


@dataclass
class Page:
    stored: list[bytes]  # the recordings' stored forms (``doccodec``), in order
    first: str  # the query string of the first page (the request's, without its cursor)
    next: str | None  # the query string of the next page, when there is one

    @property
    def docs(self) -> list[Document]:
        return [decode(blob) for blob in self.stored]


async def find_page(request: Request, services: Services, ccid: str) -> Page:
    """The page of ``ccid``'s recordings the request's query string asks for (API, console)."""
    params, settings = request.query_params, services.settings
    query = parse_query(params)
    limit = parse_limit(params.get("limit"), settings.page_size, settings.max_page_size)
    cursor = params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    stored = await run_in_threadpool(
        services.store.search_stored,
        ccid,
        query,
        limit=limit + 1,
        after=after,
        region=settings.region,
    )
    rest = [(k, v) for k, v in params.multi_items() if k != "cursor"]
    following = None
    if len(stored) > limit:
        stored = stored[:limit]
        following = urlencode([*rest, ("cursor", encode_cursor(decode(stored[-1])))])
    return Page(stored, urlencode(rest), following)


async def search(
    request: Request, services: Services, ccid: str, view: View, play_base: str, base_url: str
) -> Response:
    """A page of ``GET .../recordings``: each recording shown by ``view`` (with the play URLs
    under ``play_base``), spliced into the body as rendered for an earlier page when its
    stored form is the same (``Bodies``): a page read again costs a lookup per recording
    instead of a decompression, its JSON parsed, shown and rendered again."""
    page = await find_page(request, services, ccid)
    headers = {}
    if page.next is not None:
        headers["Link"] = f'<{base_url}{request.url.path}?{page.next}>; rel="next"'
    kept, how = services.views, f"{view.__name__} {play_base}"
    shown = []
    for blob in page.stored:
        if (body := kept.get(blob, how)) is None:
            body = orjson.dumps(view(decode(blob), play_base))
            kept.keep(blob, how, body)
        shown.append(body)
    return Response(
        b'{"statusCode":0,"recordings":[' + b",".join(shown) + b"]}",
        headers=headers,
        media_type=GWSResponse.media_type,
    )
