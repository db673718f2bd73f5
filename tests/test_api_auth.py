"""HTTP tests of authentication, roles and tenancy, SPEC §7 (and decisions on OPS and /me)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.auth import hash_password
from callrec.services import Services
from callrec.store import User
from conftest import PASSWORD, basic, local_recording

OPS = "/api/v2/ops/contact-centers/{ccid}/recordings"
RECORDER = basic("recorder")
MEDIA = "a.mp3"
DATA = b"0123456789abcdef"


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def raw_auth(value: str | bytes) -> dict[str, str]:
    if isinstance(value, bytes):
        value = "Basic " + base64.b64encode(value).decode()
    return {"Authorization": value}


def assert_error(response: Any, http_status: int, status_code: int) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == status_code
    assert isinstance(body["statusMessage"], str)


def assert_unauthenticated(response: Any) -> None:
    assert_error(response, 401, 20)
    assert response.headers["www-authenticate"].lower().startswith("basic")


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """rec-1 in cc1 with playable media, and a different rec-1 in cc2."""
    for ccid, data in (("cc1", DATA), ("cc2", b"cc2 bytes")):
        doc = local_recording("rec-1", callType=ccid, mediaFiles=[{"mediaId": MEDIA}])
        posted = client.post(OPS.format(ccid=ccid), json=doc, headers=RECORDER)
        assert posted.json() == {"statusCode": 0}
        url = f"{OPS.format(ccid=ccid)}/rec-1/media/{MEDIA}"
        assert client.put(url, content=data, headers=RECORDER).status_code == 200
    cc1_only = local_recording("only-cc1", startTime="2013-05-18T00:00:00Z")
    cc1_only["stopTime"] = "2013-05-18T01:00:00Z"
    assert client.post(OPS.format(ccid="cc1"), json=cc1_only, headers=RECORDER).status_code == 200
    return client


# (method, path, body) of every API route; bodies are valid for the route.
EXTERNAL_ROUTES = [
    ("GET", "/api/v2/recordings?startTime=0", None),
    ("GET", "/api/v2/recordings/rec-1", None),
    ("GET", f"/api/v2/recordings/rec-1/play/{MEDIA}", None),
    ("HEAD", f"/api/v2/recordings/rec-1/play/{MEDIA}", None),
]
OPS_ROUTES = [
    ("POST", OPS.format(ccid="cc1"), local_recording("new-1")),
    ("POST", "/internal-api/contact-centers/cc1/recordings", local_recording("new-1")),
    ("GET", OPS.format(ccid="cc1") + "?startTime=0", None),
    ("GET", OPS.format(ccid="cc1") + "/rec-1", None),
    ("GET", OPS.format(ccid="cc1") + f"/rec-1/play/{MEDIA}", None),
    ("HEAD", OPS.format(ccid="cc1") + f"/rec-1/play/{MEDIA}", None),
    ("PUT", OPS.format(ccid="cc1") + "/rec-1/media/new.mp3", b"bytes"),
    ("DELETE", OPS.format(ccid="cc1") + "/rec-1", None),
]
ALL_ROUTES = [*EXTERNAL_ROUTES, ("GET", "/api/v2/me", None), *OPS_ROUTES]


def call(client: TestClient, route: tuple[str, str, Any], headers: dict[str, str]) -> Any:
    method, path, body = route
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers=headers)
    if body is not None:
        return client.request(method, path, json=body, headers=headers)
    return client.request(method, path, headers=headers)


def route_id(route: tuple[str, str, Any]) -> str:
    return f"{route[0]} {route[1]}"


def still_intact(client: TestClient) -> None:
    """Nothing a refused request could have written or deleted."""
    got = client.get(OPS.format(ccid="cc1") + "/rec-1", headers=RECORDER)
    assert got.status_code == 200
    assert [m["mediaId"] for m in got.json()["recording"]["mediaFiles"]] == [MEDIA]
    new = client.get(OPS.format(ccid="cc1") + "/new-1", headers=RECORDER)
    assert new.status_code == 404


# --------------------------------------------------------------------------- 401


@pytest.mark.parametrize("route", ALL_ROUTES, ids=route_id)
def test_no_credentials_is_401(seeded: TestClient, route: tuple[str, str, Any]) -> None:
    response = call(seeded, route, {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].lower().startswith("basic")
    if route[0] != "HEAD":
        assert_unauthenticated(response)
    still_intact(seeded)


@pytest.mark.parametrize(
    "headers",
    [
        raw_auth("Basic"),
        raw_auth("Basic "),
        raw_auth("Basic !!!not-base64!!!"),
        raw_auth("Basic " + base64.b64encode(b"alice").decode()),  # no colon
        raw_auth(b":" + PASSWORD.encode()),  # empty user name
        raw_auth(b"\xff\xfe:" + PASSWORD.encode()),  # not UTF-8
        raw_auth("Bearer " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()),
        raw_auth("Digest username=alice"),
        raw_auth(base64.b64encode(f"alice:{PASSWORD}".encode()).decode()),  # no scheme
        raw_auth("Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()[:-2]),
        basic("alice", "wrong"),
        basic("alice", ""),
        basic("alice", PASSWORD + " "),
        basic("alice", PASSWORD.upper()),
        basic("nobody"),
        basic("alice\u0000"),
    ],
    ids=repr,
)
def test_bad_credentials_are_401(seeded: TestClient, headers: dict[str, str]) -> None:
    for route in [EXTERNAL_ROUTES[1], ("GET", "/api/v2/me", None), OPS_ROUTES[0]]:
        assert_unauthenticated(call(seeded, route, headers))
    still_intact(seeded)


def test_basic_scheme_is_case_insensitive(seeded: TestClient) -> None:
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    response = seeded.get("/api/v2/recordings/rec-1", headers={"Authorization": f"basic {token}"})
    assert response.status_code == 200


def test_password_may_contain_colons(client: TestClient, services: Services) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    services.store.put_user(User("colon", cheap.hash("a:b:c"), "admin", "cc1"))
    assert client.get("/api/v2/me", headers=basic("colon", "a:b:c")).status_code == 200
    assert_unauthenticated(client.get("/api/v2/me", headers=basic("colon", "a")))


# --------------------------------------------------------------------------- 403 roles


@pytest.mark.parametrize("user", ["sam", "agnes"])
@pytest.mark.parametrize("route", EXTERNAL_ROUTES, ids=route_id)
def test_supervisor_and_agent_cannot_search_read_or_play(
    seeded: TestClient, user: str, route: tuple[str, str, Any]
) -> None:
    response = call(seeded, route, basic(user))
    assert response.status_code == 403
    if route[0] != "HEAD":
        assert_error(response, 403, 5)
        assert DATA not in response.content


@pytest.mark.parametrize("user", ["alice", "bob", "sam", "agnes"])
@pytest.mark.parametrize("route", OPS_ROUTES, ids=route_id)
def test_ops_routes_refuse_contact_center_users(
    seeded: TestClient, user: str, route: tuple[str, str, Any]
) -> None:
    response = call(seeded, route, basic(user))
    assert response.status_code == 403
    if route[0] != "HEAD":
        assert_error(response, 403, 5)
    still_intact(seeded)


@pytest.mark.parametrize("route", OPS_ROUTES, ids=route_id)
def test_ops_routes_accept_ops(seeded: TestClient, route: tuple[str, str, Any]) -> None:
    response = call(seeded, route, RECORDER)
    assert response.status_code == 200, response.text


# --------------------------------------------------------------------------- tenancy


def test_bob_never_sees_cc1_recordings(seeded: TestClient) -> None:
    bob = basic("bob")
    assert_error(seeded.get("/api/v2/recordings/only-cc1", headers=bob), 404, 6)
    own = seeded.get("/api/v2/recordings/rec-1", headers=bob)
    assert own.json()["recording"]["callType"] == "cc2"
    found = seeded.get("/api/v2/recordings", params={"startTime": "0"}, headers=bob)
    assert [r["id"] for r in found.json()["recordings"]] == ["rec-1"]
    assert found.json()["recordings"][0]["callType"] == "cc2"
    assert seeded.get(f"/api/v2/recordings/rec-1/play/{MEDIA}", headers=bob).content == (
        b"cc2 bytes"
    )
    assert_error(seeded.get(f"/api/v2/recordings/only-cc1/play/{MEDIA}", headers=bob), 404, 6)
    assert seeded.head(f"/api/v2/recordings/only-cc1/play/{MEDIA}", headers=bob).status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/recordings/only-cc1",
        f"/api/v2/recordings/only-cc1/play/{MEDIA}",
        "/api/v2/recordings/rec-1",
        "/api/v2/recordings",
    ],
)
def test_contact_center_id_of_a_contact_center_user_is_ignored(
    seeded: TestClient, path: str
) -> None:
    response = seeded.get(
        path, params={"contactCenterId": "cc1", "startTime": "0"}, headers=basic("bob")
    )
    if path.endswith("/recordings"):
        assert [r["callType"] for r in response.json()["recordings"]] == ["cc2"]
    elif path.endswith("/rec-1"):
        assert response.json()["recording"]["callType"] == "cc2"
    else:
        assert_error(response, 404, 6)
    assert DATA not in response.content


def test_same_id_is_a_different_recording_per_contact_center(seeded: TestClient) -> None:
    alice = seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")).json()
    bob = seeded.get("/api/v2/recordings/rec-1", headers=basic("bob")).json()
    assert alice["recording"]["callType"] == "cc1"
    assert bob["recording"]["callType"] == "cc2"


# ----------------------------------------------------- OPS on the external API


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/recordings?startTime=0",
        "/api/v2/recordings/rec-1",
        f"/api/v2/recordings/rec-1/play/{MEDIA}",
    ],
)
def test_ops_on_external_api_needs_contact_center_id(seeded: TestClient, path: str) -> None:
    assert_error(seeded.get(path, headers=RECORDER), 400, 1)
    joiner = "&" if "?" in path else "?"
    for ccid, marker in (("cc1", "cc1"), ("cc2", "cc2")):
        response = seeded.get(f"{path}{joiner}contactCenterId={ccid}", headers=RECORDER)
        assert response.status_code == 200, response.text
        if path.endswith(MEDIA):
            assert response.content == (DATA if ccid == "cc1" else b"cc2 bytes")
        else:
            assert marker in response.text
    missing = seeded.get(
        "/api/v2/recordings/only-cc1", params={"contactCenterId": "cc2"}, headers=RECORDER
    )
    assert_error(missing, 404, 6)


# --------------------------------------------------------------------------- /me


@pytest.mark.parametrize(
    ("user", "role", "ccid"),
    [
        ("alice", "ROLE_ADMIN", "cc1"),
        ("bob", "ROLE_ADMIN", "cc2"),
        ("sam", "ROLE_SUPERVISOR", "cc1"),
        ("agnes", "ROLE_AGENT", "cc1"),
        ("recorder", "ROLE_OPS", None),
    ],
)
def test_me(client: TestClient, user: str, role: str, ccid: str | None) -> None:
    response = client.get("/api/v2/me", headers=basic(user))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "statusCode": 0,
        "user": {
            "userName": user,
            "firstName": user.title(),
            "lastName": "Tester",
            "roles": [role],
            "contactCenterId": ccid,
        },
    }
    assert "password" not in response.text.lower()
    assert "argon2" not in response.text


def test_healthz_needs_no_authentication(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"statusCode": 0, "status": "ok"}


# --------------------------------------------------------------------------- account changes


def test_password_change_takes_effect_at_once(seeded: TestClient, services: Services) -> None:
    assert seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")).status_code == 200
    assert seeded.get("/api/v2/me", headers=basic("alice")).status_code == 200  # cached now
    services.store.put_user(User("alice", hash_password("n3w-pw"), "admin", "cc1", "Alice", "T"))
    assert_unauthenticated(seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")))
    assert_unauthenticated(seeded.get("/api/v2/me", headers=basic("alice")))
    fresh = seeded.get("/api/v2/recordings/rec-1", headers=basic("alice", "n3w-pw"))
    assert fresh.status_code == 200
    # Other accounts sharing the old password are unaffected.
    assert seeded.get("/api/v2/recordings/rec-1", headers=basic("bob")).status_code == 200


def test_removed_user_fails_at_once(seeded: TestClient, services: Services) -> None:
    assert seeded.get("/api/v2/me", headers=basic("alice")).status_code == 200
    assert services.store.delete_user("alice")
    assert_unauthenticated(seeded.get("/api/v2/me", headers=basic("alice")))
    assert_unauthenticated(seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")))


def test_role_change_takes_effect_at_once(
    seeded: TestClient, services: Services, password_hash: str
) -> None:
    assert seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")).status_code == 200
    services.store.put_user(User("alice", password_hash, "agent", "cc1", "Alice", "Tester"))
    assert_error(seeded.get("/api/v2/recordings/rec-1", headers=basic("alice")), 403, 5)
    services.store.put_user(User("alice", password_hash, "admin", "cc2", "Alice", "Tester"))
    moved = seeded.get("/api/v2/recordings/rec-1", headers=basic("alice"))
    assert moved.json()["recording"]["callType"] == "cc2"
    assert_error(seeded.get("/api/v2/recordings/only-cc1", headers=basic("alice")), 404, 6)


@pytest.mark.parametrize("ccid", ["..", "a/b", "a\u0000b", "x" * 200])
def test_ops_contact_center_id_on_the_external_api_is_checked(
    client: TestClient, ccid: str
) -> None:
    response = client.get(
        "/api/v2/recordings",
        params={"startTime": "0", "contactCenterId": ccid},
        headers=basic("recorder"),
    )
    assert response.status_code == 400
    assert response.json()["statusCode"] == 2
