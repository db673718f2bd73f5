"""Shared request dependencies, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from callrec.auth import CSRF_HEADER, Principal
from callrec.errors import InvalidParameter
from callrec.model import is_safe_name
from callrec.services import Services
from callrec.web.sessions import COOKIE_METHODS, current_session


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: Services) -> Principal:
    header = request.headers.get("authorization")
    if header is None and request.method in COOKIE_METHODS:
        # The web console's session cookie lets the browser read and play (<audio> cannot
        # send Basic credentials); writes never accept it.
        session = await current_session(request, services)
        if session is not None:
            return session.user
    # Remembered credentials are checked on the loop when the user row is at hand; a slow
    # password hash, or a read over the network, goes to a worker thread.
    user = services.auth.authenticate_cached(header)
    if user is None:
        user = await run_in_threadpool(services.auth.authenticate, header)
    return user


async def current_user(request: Request, services: ServicesDep) -> Principal:
    return await authenticate(request, services)


async def admin_user(user: Annotated[Principal, Depends(current_user)]) -> Principal:
    user.require_admin()
    return user


async def ops_user(
    request: Request, services: ServicesDep, user: Annotated[Principal, Depends(current_user)]
) -> Principal:
    user.require_ops()
    if services.settings.csrf and request.method in ("POST", "PUT", "DELETE"):
        services.csrf.check(user, request.headers.get(CSRF_HEADER))
    return user


CurrentUser = Annotated[Principal, Depends(current_user)]
AdminUser = Annotated[Principal, Depends(admin_user)]
OpsUser = Annotated[Principal, Depends(ops_user)]


async def valid_ccid(ccid: str) -> str:
    """The ``{ccid}`` path parameter, refused (statusCode 2) when it cannot name a tenant."""
    if not is_safe_name(ccid):
        raise InvalidParameter("contact center id is not valid")
    return ccid


ValidCcid = Annotated[str, Depends(valid_ccid)]


def origin(request: Request, services: Services) -> str:
    """Scheme, host and port clients reach this service at (setting or request)."""
    if services.settings.public_url:
        return services.settings.public_url
    # From the scope rather than ``request.url``: no URL parsing on the hot path.
    scope = request.scope
    host = request.headers.get("host")
    if not host:
        server_host, port = scope.get("server") or ("localhost", 80)
        host = f"{server_host}:{port}"
    return f"{scope.get('scheme', 'http')}://{host}"
