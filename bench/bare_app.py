"""The baseline: a bare Starlette JSON endpoint returning a recording-sized document."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

RECORDING = {
    "statusCode": 0,
    "recording": {
        "id": "00PV5Q27MG8AB8VNE49362LAES000013",
        "callerPhoneNumber": "+16504668888",
        "dialedPhoneNumber": "+14155551234",
        "startTime": "2013-05-17T19:45:32.000+0000",
        "stopTime": "2013-05-17T22:15:36.000+0000",
        "mediaFiles": [
            {
                "mediaId": "00PV5Q27MG8AB8VNE49362LAES000013_2013-05-17_19-45-32.wav",
                "type": "audio/wav",
                "startTime": "2013-05-17T19:45:32.000+0000",
                "stopTime": "2013-05-17T22:15:36.000+0000",
                "callUUID": "00PV5Q27MG8AB8VNE49362LAES000013",
                "mediaUri": "http://127.0.0.1:8080/api/v2/recordings/00PV5Q27MG8AB8VNE49362LAES000013"
                "/play/00PV5Q27MG8AB8VNE49362LAES000013_2013-05-17_19-45-32.wav",
            }
        ],
        "eventHistory": [
            {
                "occurredAt": "2013-05-17T19:45:32.000+0000",
                "event": "Joined",
                "contact": {"type": "External", "phoneNumber": "+16504668888"},
            },
            {
                "occurredAt": "2013-05-17T19:45:40.000+0000",
                "event": "Joined",
                "contact": {
                    "type": "Agent",
                    "userName": "kim.lee@example.com",
                    "firstName": "Kim",
                    "lastName": "Lee",
                },
            },
        ],
        "region": "usw1",
        "callType": "Inbound",
    },
}


async def recording(request: Request) -> JSONResponse:
    return JSONResponse(RECORDING)


app = Starlette(routes=[Route("/api/v2/recordings/{recording_id}", recording)])
