"""Search with keyset paging, shared by the external and the ops API."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from callrec.api.errors import GWSResponse
from callrec.errors import InvalidParameter
from callrec.query import MAX_INSTANT_MS, MIN_INSTANT_MS, parse_query
from callrec.services import Services
from callrec.store import Document, SearchKey, search_key

View = Callable[[Document], Document]


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
    docs: list[Document]
    first: str  # the query string of the first page (the request's, without its cursor)
    next: str | None  # the query string of the next page, when there is one


async def find_page(request: Request, services: Services, ccid: str) -> Page:
    """The page of ``ccid``'s recordings the request's query string asks for (API, console)."""
    params, settings = request.query_params, services.settings
    query = parse_query(params)
    limit = parse_limit(params.get("limit"), settings.page_size, settings.max_page_size)
    cursor = params.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    docs = await run_in_threadpool(
        services.store.search, ccid, query, limit=limit + 1, after=after, region=settings.region
    )
    rest = [(k, v) for k, v in params.multi_items() if k != "cursor"]
    following = None
    if len(docs) > limit:
        docs = docs[:limit]
        following = urlencode([*rest, ("cursor", encode_cursor(docs[-1]))])
    return Page(docs, urlencode(rest), following)


async def search(
    request: Request, services: Services, ccid: str, view: View, base_url: str
) -> GWSResponse:
    page = await find_page(request, services, ccid)
    headers = {}
    if page.next is not None:
        headers["Link"] = f'<{base_url}{request.url.path}?{page.next}>; rel="next"'
    return GWSResponse(
        {"statusCode": 0, "recordings": [view(doc) for doc in page.docs]}, headers=headers
    )
