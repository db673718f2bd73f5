"""The one error hierarchy: every failure the API reports carries its GWS statusCode.

Handlers and the domain raise these; ``callrec.api.errors`` renders them, and nothing else
turns an exception into a response.
"""

from __future__ import annotations


class GWSError(Exception):
    """An error with a GWS ``statusCode`` and the HTTP status it is answered with."""

    status_code: int = 4
    http_status: int = 500
    default_message: str = "Internal error"

    def __init__(self, message: str | None = None, *, http_status: int | None = None) -> None:
        self.message = message or self.default_message
        if http_status is not None:
            self.http_status = http_status
        super().__init__(self.message)

    def body(self) -> dict[str, object]:
        return {"statusCode": self.status_code, "statusMessage": self.message}


class MissingParameter(GWSError):
    status_code, http_status, default_message = 1, 400, "A required parameter is missing"


class InvalidParameter(GWSError):
    status_code, http_status, default_message = 2, 400, "A parameter is not valid"


class OperationForbidden(GWSError):
    status_code, http_status, default_message = 3, 403, "Operation forbidden"


class InternalError(GWSError):
    status_code, http_status, default_message = 4, 500, "Internal error"


class DatabaseUnavailable(InternalError):
    default_message = "Database unavailable"


class StorageUnavailable(InternalError):
    """The media storage failed (502) or did not answer in time (504)."""

    http_status, default_message = 502, "Media storage unavailable"


class PermissionDenied(GWSError):
    status_code, http_status, default_message = 5, 403, "The user lacks the permission"


class NotFound(GWSError):
    status_code, http_status, default_message = 6, 404, "Resource not found"


class NotAuthenticated(GWSError):
    status_code, http_status, default_message = 20, 401, "Not authenticated"
