"""Rendering console pages: templates, security headers, static assets, error pages.

Every console response goes through ``render`` (or ``Assets`` for files), so each carries
the same strict Content-Security-Policy: no inline script or style, nothing from another
origin, no framing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from callrec import __version__
from callrec.services import Services
from callrec.settings import Settings
from callrec.web.sessions import Session, SessionManager

log = logging.getLogger("callrec")
PACKAGE_DIR = Path(__file__).resolve().parent
# Paths the console never answers, even for a browser: they belong to the API.
API_PREFIXES = ("/api/", "/internal-api/", "/healthz", "/openapi.json", "/docs")


@functools.cache
def environment() -> Environment:
    """The template environment: every value is HTML-escaped unless a template says not."""
    env = Environment(
        loader=FileSystemLoader(PACKAGE_DIR / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["path_segment"] = lambda value: quote(str(value), safe="")
    return env


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(settings: Settings) -> dict[str, str]:
    """Headers every console response carries."""
    media = "'self'"
    if settings.public_url:  # play URLs are written with the public URL
        media += " " + origin_of(settings.public_url)
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"media-src {media}; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def sessions_of(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.sessions
    return manager


def page_context(request: Request, session: Session | None) -> dict[str, Any]:
    """What the base template needs: prefixes, the signed-in user and the sign-out token."""
    root = services_of(request).settings.root_path
    return {
        "root": root,
        "static": f"{root}/static",
        "version": __version__,
        "user": session.user if session else None,
        "logout_token": sessions_of(request).form_token("logout", session.sid) if session else "",
    }


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    session: Session | None = None,
) -> HTMLResponse:
    session = session or getattr(request.state, "session", None)
    values = {**page_context(request, session), **context}
    body = environment().get_template(template).render(values)
    headers = security_headers(services_of(request).settings)
    # Pages show tenant data and carry form tokens: never cache them anywhere.
    headers["Cache-Control"] = "no-store"
    headers["Vary"] = "Accept, Cookie"
    return HTMLResponse(body, status_code=status, headers=headers)


def error_page(request: Request, status: int, title: str, message: str, **extra: Any) -> Response:
    context = {"title": title, "message": message, "status": status, **extra}
    return render(request, "error.html", context, status=status)


def unexpected_page(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_page(
        request,
        500,
        "Something went wrong",
        "The server could not show this page. The details are in the server's log.",
    )


def wants_html(headers: Headers) -> bool:
    """Whether the client asked for a page (browsers do when they navigate)."""
    return "text/html" in headers.get("accept", "")


class Assets:
    """The console's CSS, JS and icons, with the console's security headers."""

    def __init__(self, settings: Settings) -> None:
        self._files = StaticFiles(directory=PACKAGE_DIR / "static")
        self._headers = security_headers(settings)
        # Revalidated every time (ETag): cheap, and a new version is seen at once.
        self._headers["Cache-Control"] = "no-cache"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(self._headers)
            await send(message)

        await self._files(scope, receive, send_with_headers)


class PageNotFound(BaseRoute):
    """The last route: a browser asking for an unknown console page gets a page, not JSON.

    API clients (no ``text/html`` in Accept) and every API path keep the GWS 404.
    """

    def __init__(self, root: str) -> None:
        self.root = root

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        path: str = scope["path"]
        if not path.startswith(self.root + "/"):
            return Match.NONE, {}
        if path[len(self.root) :].startswith(API_PREFIXES) or not wants_html(Headers(scope=scope)):
            return Match.NONE, {}
        return Match.FULL, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = error_page(request, 404, "Page not found", "There is no page at this address.")
        await response(scope, receive, send)
