"""The console's pages: sign-in and sign-out, search, one recording.

Handlers are thin: each checks the session, calls the same building blocks as the external
API (``parse_query``, the store's keyset search, ``load``, ``external_view``) and renders.
Every failure becomes a page (``guarded``); none reaches the API's JSON error handler,
except ``GET /`` from a client that does not ask for HTML, which keeps the API's GWS 404.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from callrec.api.recordings import load, play_base
from callrec.api.render import external_view
from callrec.api.search import find_page
from callrec.errors import GWSError, InvalidParameter, NotAuthenticated, NotFound
from callrec.query import QUERY_PARAMETERS
from callrec.services import Services
from callrec.settings import Settings
from callrec.web.pages import (
    Assets,
    PageNotFound,
    error_page,
    render,
    services_of,
    sessions_of,
    unexpected_page,
    wants_html,
)
from callrec.web.sessions import (
    SESSION_COOKIE,
    Session,
    clear_cookie,
    current_session,
    set_cookie,
)
from callrec.web.timeline import build_timeline
from callrec.web.views import event_rows, recording_row

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "callrec_login"
NOTICES = {
    "expired": "Your session has ended. Please sign in again.",
    "signed-out": "You are signed out.",
}
ADMINS_ONLY = "Only Contact Center Admins can view recordings."
ERROR_TITLES = {400: "The request is not valid", 403: "Not allowed", 404: "Not found"}


class PageExit(Exception):
    """Stop building a page and answer this instead (a redirect, a refusal)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


Build = Callable[[Request, Services], Awaitable[Response]]


async def guarded(request: Request, build: Build) -> Response:
    """Run a page handler; every failure is answered with a page, never a stack trace."""
    try:
        return await build(request, services_of(request))
    except PageExit as answer:
        return answer.response
    except GWSError as error:
        title = ERROR_TITLES.get(error.http_status, "Something went wrong")
        return error_page(request, error.http_status, title, error.message, code=error.status_code)
    except Exception as exc:
        return unexpected_page(request, exc)


def see_other(url: str) -> RedirectResponse:
    """Post/redirect/get and sign-in redirects: the browser follows with a GET."""
    return RedirectResponse(url, HTTPStatus.SEE_OTHER, headers={"Cache-Control": "no-store"})


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def safe_next(value: object, root: str) -> str:
    """Where to go after signing in: a console path of this server, never elsewhere."""
    home = f"{root}/"
    if not isinstance(value, str) or not value.startswith(home) or len(value) > 4096:
        return home
    if value.startswith("//") or "\\" in value or any(ord(c) < 32 for c in value):
        return home
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith(f"{root}/login"):
        return home
    return value


def same_origin(request: Request, settings: Settings) -> bool:
    """Whether a form post comes from this site (when the browser says where from)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:  # not a URL: no origin of ours
        return False
    if netloc and netloc == request.headers.get("host"):
        return True
    return bool(settings.public_url) and origin == settings.public_url


async def admin_session(request: Request, services: Services) -> Session:
    """The signed-in Contact Center Admin, or a redirect to sign in / a refusal page."""
    session = await current_session(request, services)
    root = services.settings.root_path
    if session is None:
        target = f"{root}/login?" + urlencode({"next": here(request)})
        if SESSION_COOKIE in request.cookies:
            target += "&reason=expired"
        response = see_other(target)
        if SESSION_COOKIE in request.cookies:
            clear_cookie(response, request, services.settings, SESSION_COOKIE)
        raise PageExit(response)
    request.state.session = session
    if session.user.role != "admin":
        raise PageExit(error_page(request, 403, "Admins only", ADMINS_ONLY, role=session.user.role))
    return session


# --------------------------------------------------------------------------- search


def clean_query(request: Request) -> str | None:
    """The search URL without the form's blank fields, when it has any (None: it is clean)."""
    params = request.query_params
    blank = [k for k in QUERY_PARAMETERS if k in params and not params[k].strip()]
    if not blank:
        return None
    kept = [(k, v) for k, v in params.multi_items() if k not in blank and k != "cursor"]
    return request.url.path + (f"?{urlencode(kept)}" if kept else "")


async def search_page(request: Request, services: Services) -> Response:
    session = await admin_session(request, services)
    cleaned = clean_query(request)
    if cleaned is not None:
        return see_other(cleaned)
    params = request.query_params
    context: dict[str, object] = {
        "title": "Recordings",
        "form": {key: params.get(key, "") for key in QUERY_PARAMETERS},
        "rows": None,
        "error": None,
        "next_url": None,
        "first_url": None,
    }
    status = 200
    if any(key in params for key in QUERY_PARAMETERS):
        try:
            context.update(await run_search(request, services, session))
        except GWSError as error:
            context["error"] = error
            status = error.http_status
    return render(request, "search.html", context, status=status)


async def run_search(request: Request, services: Services, session: Session) -> dict[str, object]:
    """The results of the URL's query, exactly as ``GET /api/v2/recordings`` finds them."""
    assert session.user.ccid is not None  # sessions are for contact-center users only
    page = await find_page(request, services, session.user.ccid)
    path = request.url.path
    found: dict[str, object] = {}
    if request.query_params.get("cursor"):
        found["first_url"] = f"{path}?{page.first}"
    if page.next is not None:
        found["next_url"] = f"{path}?{page.next}"
    base = play_base(request, services)
    found["rows"] = [recording_row(external_view(doc, base)) for doc in page.docs]
    return found


@router.get("/")
async def index(request: Request) -> Response:
    if not wants_html(request.headers):
        raise NotFound()  # API clients keep the GWS answer for an unknown route
    return await guarded(request, search_page)


# --------------------------------------------------------------------------- recording


def back_to_search(request: Request, root: str) -> str:
    """The search the user came from (same-origin Referer), else the empty search page."""
    try:
        referer = urlsplit(request.headers.get("referer", ""))
    except ValueError:  # not a URL: not a search of ours
        return f"{root}/"
    if referer.netloc == request.headers.get("host") and referer.path == f"{root}/":
        return f"{root}/" + (f"?{referer.query}" if referer.query else "")
    return f"{root}/"


@router.get("/recordings/{recording_id}")
async def recording(recording_id: str, request: Request) -> Response:
    async def build(request: Request, services: Services) -> Response:
        session = await admin_session(request, services)
        assert session.user.ccid is not None
        doc = await load(services, session.user.ccid, recording_id)
        shown = external_view(doc, play_base(request, services))
        row = recording_row(shown)
        timeline = build_timeline(shown)
        context = {
            "title": f"Recording {row.id}",
            "rec": row,
            "timeline": timeline,
            "events": event_rows(shown),
            "back_url": back_to_search(request, services.settings.root_path),
        }
        return render(request, "recording.html", context)

    return await guarded(request, build)


# --------------------------------------------------------------------------- sign-in


def login_page(
    request: Request,
    services: Services,
    *,
    next_url: str,
    notice: str = "",
    error: str = "",
    username: str = "",
    status: int = 200,
) -> Response:
    """The sign-in form with a fresh CSRF token bound to the login cookie."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    fresh = not (nonce.isalnum() and len(nonce) == 32)
    if fresh:
        nonce = secrets.token_hex(16)
    context = {
        "title": "Sign in",
        "csrf": sessions_of(request).form_token("login", nonce),
        "next": next_url,
        "notice": notice,
        "error": error,
        "username": username,
    }
    response = render(request, "login.html", context, status=status)
    if fresh:
        set_cookie(
            response, request, services.settings, LOGIN_COOKIE, nonce, path=login_path(services)
        )
    return response


def login_path(services: Services) -> str:
    return f"{services.settings.root_path}/login"


async def read_form(request: Request) -> FormData:
    """The posted form; small forms only (a user name, a password, two tokens)."""
    try:
        return await request.form(max_files=0, max_fields=8, max_part_size=16 * 1024)
    except HTTPException:  # malformed, or over the limits
        raise InvalidParameter("The form is not valid") from None


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.get("/login")
async def login_form(request: Request) -> Response:
    async def build(request: Request, services: Services) -> Response:
        root = services.settings.root_path
        next_url = safe_next(request.query_params.get("next"), root)
        session = await current_session(request, services)
        if session is not None and session.user.role == "admin":
            return see_other(next_url)
        notice = NOTICES.get(request.query_params.get("reason", ""), "")
        return login_page(request, services, next_url=next_url, notice=notice)

    return await guarded(request, build)


@router.post("/login")
async def login(request: Request) -> Response:
    return await guarded(request, sign_in)


async def sign_in(request: Request, services: Services) -> Response:
    form = await read_form(request)
    settings = services.settings
    next_url = safe_next(field(form, "next"), settings.root_path)
    name = field(form, "username")
    manager = sessions_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not same_origin(request, settings) or not manager.check_form_token(
        "login", nonce, form.get("csrf")
    ):
        expired = "The sign-in form has expired. Please try again."
        return login_page(
            request, services, next_url=next_url, error=expired, username=name, status=403
        )
    try:
        principal = await run_in_threadpool(
            services.auth.check_password, name, field(form, "password")
        )
    except NotAuthenticated as error:
        return login_page(
            request,
            services,
            next_url=next_url,
            error=error.message,
            username=name,
            status=HTTPStatus.UNPROCESSABLE_ENTITY,
        )
    user = await run_in_threadpool(services.store.get_user, principal.name)
    if principal.role != "admin" or user is None or user.ccid is None:
        return error_page(
            request,
            403,
            "Admins only",
            ADMINS_ONLY,
            role=principal.role,
            signed_out=True,
        )
    token, _ = manager.issue(user)
    response = see_other(next_url)
    max_age = max(1, math.ceil(settings.session_seconds))
    set_cookie(response, request, settings, SESSION_COOKIE, token, max_age=max_age)
    clear_cookie(response, request, settings, LOGIN_COOKIE, path=login_path(services))
    return response


# --------------------------------------------------------------------------- sign-out


@router.get("/logout")
async def logout_form(request: Request) -> Response:
    async def build(request: Request, services: Services) -> Response:
        session = await current_session(request, services)
        if session is None:
            return see_other(login_path(services))
        request.state.session = session
        return render(request, "logout.html", {"title": "Sign out"})

    return await guarded(request, build)


@router.post("/logout")
async def logout(request: Request) -> Response:
    return await guarded(request, sign_out)


async def sign_out(request: Request, services: Services) -> Response:
    form = await read_form(request)
    settings = services.settings
    session = await current_session(request, services)
    if session is not None:
        manager = sessions_of(request)
        token_ok = manager.check_form_token("logout", session.sid, form.get("csrf"))
        if not same_origin(request, settings) or not token_ok:
            request.state.session = session
            return error_page(
                request,
                403,
                "Sign-out refused",
                "This sign-out request did not come from the console. Use the Sign out button.",
            )
        manager.revoke(session)
    response = see_other(f"{login_path(services)}?reason=signed-out")
    clear_cookie(response, request, settings, SESSION_COOKIE)
    return response


# --------------------------------------------------------------------------- wiring


def install(app: FastAPI, settings: Settings) -> None:
    """Add the console to ``app``: pages under the root prefix, assets, the HTML 404."""
    root = settings.root_path
    app.include_router(router, prefix=root)
    app.mount(f"{root}/static", Assets(settings), name="console-static")
    app.router.routes.append(PageNotFound(root))
