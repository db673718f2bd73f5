"""The hot read path, answered before the framework's machinery.

``GET /api/v2/recordings/{id}`` is what players and analytics tools call most. The
framework's middleware, routing and dependency resolution cost several times the work of
answering it (two indexed reads and one JSON rendering), so the application answers it
first, with the very same handler function the router would call. ``bench/run.py``
measures the result beside a bare Starlette endpoint.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from callrec.api.errors import error_response, unexpected_error
from callrec.api.recordings import read_recording
from callrec.errors import GWSError


class FastReadsApp(FastAPI):
    """A FastAPI application whose hottest read skips the middleware stack and router."""

    fast_prefix = "/api/v2/recordings/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        prefix = self.fast_prefix
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(prefix)
            or len(path) == len(prefix)
            or "/" in path[len(prefix) :]
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive)
        try:
            response = await read_recording(request, self.state.services, path[len(prefix) :])
        except GWSError as error:
            response = error_response(error)
        except Exception as exc:
            response = unexpected_error(request, exc)
        await response(scope, receive, send)
