"""The internal (ops) API (SPEC §5): what recorders and their upload scripts call."""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import weakref
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from callrec.api import search as searching
from callrec.api.deps import OpsUser, ServicesDep, ValidCcid, origin
from callrec.api.errors import GWSResponse
from callrec.api.play import play
from callrec.api.recordings import load
from callrec.api.render import ops_view
from callrec.errors import GWSError, InvalidParameter, NotFound
from callrec.ingest import parse_json, prepare
from callrec.media import UploadTooLarge
from callrec.model import MEDIA_ID_PATTERN, is_safe_name
from callrec.services import Services
from callrec.store import Document

log = logging.getLogger("callrec")
router = APIRouter(tags=["ops"])
PATH = "/contact-centers/{ccid}/recordings"


def ops_play_base(request: Request, services: Services, ccid: str) -> str:
    root = services.settings.root_path
    return f"{origin(request, services)}{root}/api/v2/ops/contact-centers/{ccid}/recordings"


def refuse_declared_over(request: Request, limit: int, error: GWSError) -> None:
    """Refuse a body whose declared length is over ``limit`` before reading any of it (the
    read itself stops at ``limit`` too: the header may be absent or lie)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise error


async def read_json(request: Request, limit: int) -> Any:
    refuse_declared_over(
        request, limit, InvalidParameter("The request body is too large", http_status=413)
    )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidParameter("The request body is too large", http_status=413)
    return parse_json(bytes(body))


def _result(raw: Any, outcome: Document | GWSError) -> dict[str, Any]:
    rec_id = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(outcome, GWSError):
        return {"id": rec_id, **outcome.body()}
    return {"id": rec_id, "statusCode": 0}


async def create_or_merge(request: Request, ccid: str, services: Services) -> Response:
    data = await read_json(request, services.settings.max_body_bytes)
    items = data if isinstance(data, list) else [data]
    outcomes: list[Document | GWSError] = []
    valid: list[Document] = []
    for raw in items:
        try:
            valid.append(prepare(services.storages, raw, ccid))
            outcomes.append(valid[-1])
        except GWSError as error:
            outcomes.append(error)
    saved = iter(await run_in_threadpool(services.store.upsert, ccid, valid))
    outcomes = [o if isinstance(o, GWSError) else next(saved) for o in outcomes]
    failures = [o for o in outcomes if isinstance(o, GWSError)]
    if not isinstance(data, list) and failures:
        raise failures[0]
    if not failures:
        return GWSResponse({"statusCode": 0})
    return GWSResponse(
        {
            "statusCode": 7,
            "statusMessage": f"{len(items) - len(failures)} of {len(items)} recordings saved",
            "results": [_result(raw, o) for raw, o in zip(items, outcomes, strict=True)],
        }
    )


@router.post("/api/v2/ops" + PATH, summary="Create or merge recordings")
async def create(
    ccid: ValidCcid, request: Request, user: OpsUser, services: ServicesDep
) -> Response:
    return await create_or_merge(request, ccid, services)


@router.post("/internal-api" + PATH, summary="Create or merge recordings (internal path)")
async def create_internal(
    ccid: ValidCcid, request: Request, user: OpsUser, services: ServicesDep
) -> Response:
    return await create_or_merge(request, ccid, services)


@router.get("/api/v2/ops" + PATH, summary="Search a contact center's recordings")
async def search(
    ccid: ValidCcid,
    request: Request,
    user: OpsUser,
    services: ServicesDep,
    _: searching.SearchQuery,
) -> Response:
    base = ops_play_base(request, services, ccid)
    return await searching.search(
        request, services, ccid, ops_view, base, origin(request, services)
    )


@router.get("/api/v2/ops" + PATH + "/{recording_id}", summary="Get a recording as stored")
async def get(
    ccid: ValidCcid, recording_id: str, request: Request, user: OpsUser, services: ServicesDep
) -> Response:
    doc = await load(services, ccid, recording_id)
    return GWSResponse(
        {"statusCode": 0, "recording": ops_view(doc, ops_play_base(request, services, ccid))}
    )


@router.get(
    "/api/v2/ops" + PATH + "/{recording_id}/play/{media_id}",
    summary="Play media (ops)",
    operation_id="ops_play",
)
@router.head(
    "/api/v2/ops" + PATH + "/{recording_id}/play/{media_id}",
    summary="Play media (ops) (headers only)",
    operation_id="ops_play_head",
)
async def play_media(
    ccid: ValidCcid,
    recording_id: str,
    media_id: str,
    request: Request,
    user: OpsUser,
    services: ServicesDep,
) -> Response:
    doc = await load(services, ccid, recording_id)
    return await play(request, services, doc, media_id)


@router.delete("/api/v2/ops" + PATH + "/{recording_id}", summary="Delete a recording")
async def delete(
    ccid: ValidCcid, recording_id: str, user: OpsUser, services: ServicesDep
) -> Response:
    await load(services, ccid, recording_id)  # 404 for another region's recording too
    doc = await run_in_threadpool(services.store.delete, ccid, recording_id)
    if doc is None:
        raise NotFound("Recording not found")
    await delete_media(services, ccid, recording_id, doc)
    return GWSResponse({"statusCode": 0})


async def delete_media(services: Services, ccid: str, recording_id: str, doc: Document) -> None:
    """Delete the media files of a deleted recording that callrec owns (its own uploads),
    and, with ``CALLREC_DELETE_EXTERNAL_MEDIA``, those on WebDAV and S3 storages too.

    The recording is already gone: a file that cannot be deleted now is logged and later
    listed as orphaned by ``callrec media check``; it does not fail the request.
    """
    storages = services.storages
    for media in doc.get("mediaFiles", []):
        descriptor = media.get("mediaDescriptor")
        if not isinstance(descriptor, dict) or descriptor.get("storage") not in storages.stores:
            continue
        store = storages.stores[descriptor["storage"]]
        owned = storages.owns(descriptor, ccid, recording_id)
        # The upload storage holds every contact center's uploads: outside this recording's
        # own folder there, nothing is deleted, whatever the recording pointed at.
        external = store.kind != "local" and store.name != storages.upload_store
        if owned or (services.settings.delete_external_media and external):
            try:
                await store.delete(descriptor["path"])
            except (GWSError, OSError) as error:
                log.warning(
                    "storage %s: media of deleted recording %s/%s not deleted: %s",
                    store.name,
                    ccid,
                    recording_id,
                    type(error).__name__,
                )


_upload_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


def _upload_lock(name: str) -> asyncio.Lock:
    """The lock of uploads to the file ``name``, there while some upload holds or awaits it.
    Per process: several servers sharing a store each serialise only their own."""
    lock = _upload_locks.get(name)
    if lock is None:
        lock = _upload_locks[name] = asyncio.Lock()
    return lock


@router.put("/api/v2/ops" + PATH + "/{recording_id}/media/{media_id}", summary="Upload media bytes")
async def upload(
    ccid: ValidCcid,
    recording_id: str,
    media_id: str,
    request: Request,
    user: OpsUser,
    services: ServicesDep,
) -> Response:
    if not is_safe_name(media_id, MEDIA_ID_PATTERN):
        raise InvalidParameter("mediaId is not a valid file name")
    doc = await load(services, ccid, recording_id)
    limit = services.settings.max_upload_bytes
    refuse_declared_over(request, limit, UploadTooLarge())
    store = services.storages.uploads()
    key = f"{ccid}/{recording_id}/{media_id}"
    # Uploads to one file, one after the other: the size recorded is that of the bytes the
    # file holds (two at once could each publish, then record, in opposite orders).
    async with _upload_lock(f"{store.name}/{key}"):
        try:
            size = await store.put(key, request.stream(), limit)
        except ClientDisconnect:  # the body ended early: nothing was kept
            raise InvalidParameter("The upload ended before all of its bytes arrived") from None
        existing = next(
            (m for m in doc.get("mediaFiles", []) if m.get("mediaId") == media_id), None
        )
        location = {"storage": store.name, "path": key}
        # The upload is where the media is now given: what an export writes (``as_posted``), in
        # place of a location the recorder sent before, whose bytes are no longer the ones played.
        media: Document = {
            "mediaId": media_id,
            "size": str(size),
            "mediaDescriptor": location,
            "originalMediaDescriptor": dict(location),
        }
        if not (existing or {}).get("type"):
            sent = request.headers.get("content-type", "").split(";")[0].strip()
            media["type"] = (
                sent
                if sent and sent != "application/octet-stream"
                else mimetypes.guess_type(media_id)[0]
            ) or "application/octet-stream"
        update = {"id": recording_id, "region": doc.get("region"), "mediaFiles": [media]}
        [outcome] = await run_in_threadpool(services.store.upsert, ccid, [update])
        if isinstance(outcome, GWSError):
            if await run_in_threadpool(services.store.get, ccid, recording_id) is None:
                # Deleted while the bytes arrived: the delete could not know of this file, and
                # no recording will ever point at it.
                await delete_media(services, ccid, recording_id, {"mediaFiles": [media]})
                raise NotFound("Recording not found")
            raise outcome
    return GWSResponse({"statusCode": 0, "size": size})
