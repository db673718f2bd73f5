"""The hot read path, served ahead of the framework's router.

``GET /api/v2/recordings/{id}`` is what players and analytics tools call most. Routing and
dependency resolution cost several times the work of answering it (an indexed read and one
JSON rendering), so this middleware answers it directly with the very same handler
function; ``bench/run.py`` measures the difference. Everything else goes to the router.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from callrec.api.errors import error_response, unexpected_error
from callrec.api.recordings import read_recording
from callrec.errors import GWSError


class FastReads:
    def __init__(self, app: ASGIApp, root_path: str = "") -> None:
        self.app = app
        self.prefix = f"{root_path}/api/v2/recordings/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(self.prefix)
            or "/" in path[len(self.prefix) :]
            or len(path) == len(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            services = scope["app"].state.services
            response = await read_recording(request, services, path[len(self.prefix) :])
        except GWSError as error:
            response = error_response(error)
        except Exception as exc:
            response = unexpected_error(request, exc)
        await response(scope, receive, send)
