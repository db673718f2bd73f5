"""``GET /api/v2/me``: who is signed in, and the CSRF token when CSRF is on."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from callrec.api.deps import CurrentUser, ServicesDep
from callrec.api.errors import GWSResponse
from callrec.auth import CSRF_HEADER

router = APIRouter(prefix="/api/v2", tags=["me"])


@router.get("/me", summary="The authenticated user")
async def me(user: CurrentUser, services: ServicesDep) -> Response:
    body = {
        "statusCode": 0,
        "user": {
            "userName": user.name,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "roles": [f"ROLE_{user.role.upper()}"],
            "contactCenterId": user.ccid,
        },
    }
    headers = {}
    if services.settings.csrf:
        headers = {"X-CSRF-HEADER": CSRF_HEADER, "X-CSRF-TOKEN": services.csrf.token(user)}
    return GWSResponse(body, headers=headers)
