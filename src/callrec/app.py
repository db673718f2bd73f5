"""``create_app(settings)``: the ASGI application. Nothing is opened before start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from callrec import __version__
from callrec.api import me, ops, recordings
from callrec.api.deps import ServicesDep
from callrec.api.errors import GWSResponse, install_error_handlers
from callrec.api.fastpath import FastReadsApp
from callrec.errors import GWSError, InternalError
from callrec.services import Services
from callrec.settings import Settings
from callrec.web import router as console
from callrec.web.sessions import open_sessions

health = APIRouter(tags=["health"])


@health.get("/healthz", summary="Liveness and database check for load balancers")
async def healthz(services: ServicesDep) -> Response:
    try:
        await run_in_threadpool(services.store.ping)
    except Exception:
        raise InternalError("Database unavailable", http_status=503) from None
    return GWSResponse({"statusCode": 0, "status": "ok"})


def create_app(settings: Settings, services: Services | None = None) -> FastAPI:
    """Build the app. ``services`` lets a caller share already opened services (tests, CLI)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or Services.open(settings)
        try:
            app.state.sessions = open_sessions(app.state.services)
            yield
        finally:
            # Storage connection pools belong to this event loop: close them on it.
            if owned:
                await app.state.services.aclose()
            else:
                await app.state.services.storages.aclose()

    app = FastReadsApp(
        title="callrec",
        version=__version__,
        description="Call-recording catalogue speaking the GWS Call Recording API.",
        lifespan=lifespan,
        # No OpenTelemetry hooks: their per-request checks cost more than the hot read.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_url=f"{settings.root_path}/openapi.json",
        docs_url=f"{settings.root_path}/docs",
        redoc_url=None,
        responses={
            "default": {
                "description": "GWS error",
                "content": {"application/json": {"schema": GWS_ERROR_SCHEMA}},
            }
        },
    )
    install_error_handlers(app)
    app.fast_prefix = f"{settings.root_path}/api/v2/recordings/"
    for router in (recordings.router, ops.router, me.router, health):
        app.include_router(router, prefix=settings.root_path)
    if settings.root_path:
        app.include_router(health)
    console.install(app, settings)  # last: its HTML 404 route must come after every API route
    return app


GWS_ERROR_SCHEMA = {
    "type": "object",
    "required": ["statusCode", "statusMessage"],
    "properties": {
        "statusCode": {
            "type": "integer",
            "enum": sorted({c.status_code for c in GWSError.__subclasses__()} | {7}),
        },
        "statusMessage": {"type": "string"},
    },
}
