"""The one place where failures become HTTP responses, always in the GWS error shape.

Bodies carry ``statusCode`` and ``statusMessage`` only: never a stack trace, SQL, a file
path or a storage URL. Unexpected exceptions are logged here and answered as statusCode 4.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from callrec.errors import GWSError, InternalError, InvalidParameter, NotFound

log = logging.getLogger("callrec")


class GWSResponse(Response):
    """JSON rendered with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GWSError) -> GWSResponse:
    headers = {"WWW-Authenticate": 'Basic realm="callrec"'} if error.http_status == 401 else None
    return GWSResponse(error.body(), status_code=error.http_status, headers=headers)


async def _gws_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GWSError)
    return error_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return error_response(InvalidParameter("The request is not valid"))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(NotFound())
    if exc.status_code == 405:
        response = error_response(InvalidParameter("Method not allowed", http_status=405))
        response.headers.update(exc.headers or {})  # Allow
        return response
    if exc.status_code < 500:
        return error_response(
            InvalidParameter("The request is not valid", http_status=exc.status_code)
        )
    return error_response(InternalError())


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error(request, exc)


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(InternalError())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GWSError, _gws_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
