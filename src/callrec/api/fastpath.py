"""The hot read path, answered before the framework's machinery.

``GET /api/v2/recordings/{id}`` and its ``/play/{mediaId}`` (every seek of a player is a
request) are what players and analytics tools call most. The
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
from callrec.api.recordings import play_recording, read_recording
from callrec.errors import GWSError


class FastReadsApp(FastAPI):
    """A FastAPI application whose hottest read skips the middleware stack and router."""

    fast_prefix = "/api/v2/recordings/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._hot(scope)
        if target is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive)
        services = self.state.services
        try:
            if len(target) == 1:
                response = await read_recording(request, services, target[0])
            else:
                response = await play_recording(request, services, target[0], target[2])
        except GWSError as error:
            response = error_response(error)
        except Exception as exc:
            response = unexpected_error(request, exc)
        await response(scope, receive, send)

    def _hot(self, scope: Scope) -> list[str] | None:
        """``[id]`` for a recording read, ``[id, "play", mediaId]`` for a play; else None."""
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.fast_prefix):
            return None
        parts = path[len(self.fast_prefix) :].split("/")
        if scope["method"] == "GET" and len(parts) == 1 and parts[0]:
            return parts
        if (
            scope["method"] in ("GET", "HEAD")
            and len(parts) == 3
            and parts[1] == "play"
            and parts[0]
            and parts[2]
        ):
            return parts
        return None
