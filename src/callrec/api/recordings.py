"""The external API (SPEC §2): search, read and play the caller's own recordings."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from callrec.api import search as searching
from callrec.api.deps import AdminUser, ServicesDep, authenticate, origin
from callrec.api.errors import GWSResponse
from callrec.api.play import play
from callrec.api.render import external_view
from callrec.auth import Principal
from callrec.doccodec import decode
from callrec.errors import InvalidParameter, MissingParameter, NotFound
from callrec.model import is_safe_name
from callrec.services import Services
from callrec.store import UNKNOWN, Document

router = APIRouter(prefix="/api/v2", tags=["recordings"])


def scope(user: Principal, request: Request) -> str:
    """The contact center a request acts on: the user's own; OPS accounts name one."""
    if user.ccid is not None:
        return user.ccid
    ccid = request.query_params.get("contactCenterId")
    if not ccid:
        raise MissingParameter("OPS accounts must give contactCenterId")
    if not is_safe_name(ccid):
        raise InvalidParameter("contactCenterId is not valid")
    return ccid


def play_base(request: Request, services: Services) -> str:
    return f"{origin(request, services)}{services.settings.root_path}/api/v2/recordings"


async def stored(services: Services, ccid: str, recording_id: str) -> bytes:
    """The recording's stored form (``doccodec``), or NotFound."""
    if not is_safe_name(recording_id):  # no such id can exist; never send it to a database
        raise NotFound("Recording not found")
    store, region = services.store, services.settings.region
    found = store.peek_stored(ccid, recording_id, region)  # remembered, or a local read
    if found is UNKNOWN:
        found = await store.fetch_stored(ccid, recording_id, region)
    if found is None:
        raise NotFound("Recording not found")
    return found


async def load(services: Services, ccid: str, recording_id: str) -> Document:
    return decode(await stored(services, ccid, recording_id))


@router.get("/recordings", summary="Search recordings")
async def search_recordings(
    request: Request,
    user: AdminUser,
    services: ServicesDep,
    _: searching.SearchQuery,
    contactCenterId: Annotated[
        str | None, Query(description="The contact center, for OPS accounts only.")
    ] = None,
) -> Response:
    return await searching.search(
        request,
        services,
        scope(user, request),
        external_view,
        play_base(request, services),
        origin(request, services),
    )


async def read_recording(request: Request, services: Services, recording_id: str) -> Response:
    """GET one recording. Also served by ``callrec.api.fastpath`` ahead of the router."""
    user = await authenticate(request, services)
    user.require_admin()
    base = play_base(request, services)
    found = await stored(services, scope(user, request), recording_id)
    body = services.bodies.get(found, base)
    if body is None:
        body = orjson.dumps({"statusCode": 0, "recording": external_view(decode(found), base)})
        services.bodies.keep(found, base, body)
    return Response(body, media_type=GWSResponse.media_type)


@router.get("/recordings/{recording_id}", summary="Get one recording")
async def get_recording(recording_id: str, request: Request, services: ServicesDep) -> Response:
    return await read_recording(request, services, recording_id)


@router.get("/recordings/{recording_id}/play/{media_id}", summary="Play media", operation_id="play")
@router.head(
    "/recordings/{recording_id}/play/{media_id}",
    summary="Play media (headers only)",
    operation_id="play_head",
)
async def play_media(
    recording_id: str, media_id: str, request: Request, services: ServicesDep
) -> Response:
    return await play_recording(request, services, recording_id, media_id)


async def play_recording(
    request: Request, services: Services, recording_id: str, media_id: str
) -> Response:
    """GET/HEAD a media file. Also served by ``callrec.api.fastpath`` ahead of the router."""
    user = await authenticate(request, services)
    user.require_admin()
    doc = await load(services, scope(user, request), recording_id)
    return await play(request, services, doc, media_id)
