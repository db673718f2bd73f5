"""Every error path answers the GWS error shape, SPEC §6, and malformed input never 500s."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.services import Services
from callrec.settings import Settings
from conftest import PASSWORD, basic, load_example, local_recording

OPS = "/api/v2/ops/contact-centers/cc1/recordings"
RECORDER = basic("recorder")
ALICE = basic("alice")
LEAKS = ("Traceback", "SELECT", "/var", "sqlite", 'File "', "http://", "https://", "s3://")


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def assert_gws_error(
    response: Any, http_status: int, status_code: int, data_dir: Path | None = None
) -> None:
    """Exactly ``{"statusCode": int, "statusMessage": str}`` as JSON, and nothing leaked."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    body = json.loads(response.content)
    assert isinstance(body, dict)
    assert set(body) == {"statusCode", "statusMessage"}
    assert type(body["statusCode"]) is int
    assert body["statusCode"] == status_code
    assert isinstance(body["statusMessage"], str)
    assert body["statusMessage"]
    assert_no_leak(response.text, data_dir)


def assert_no_leak(text: str, data_dir: Path | None = None) -> None:
    for leak in LEAKS:
        assert leak.lower() not in text.lower(), leak
    if data_dir is not None:
        assert str(data_dir) not in text
        assert str(data_dir.resolve()) not in text


def assert_4xx_gws(response: Any, data_dir: Path | None = None) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = json.loads(response.content)
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] in (1, 2, 3, 5, 6, 20)
    assert_no_leak(response.text, data_dir)


def asgi_request(
    app: Any, method: str, path: str, query: bytes = b"", headers: dict[str, bytes] | None = None
) -> tuple[int, bytes]:
    """Call the ASGI app directly, for requests an HTTP client library refuses to send."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(k.lower().encode(), v) for k, v in (headers or {}).items()],
    }
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    async def run() -> None:
        await app(scope, receive, send)

    anyio.run(run)
    return status, b"".join(chunks)


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    doc = local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3"}])
    assert client.post(OPS, json=doc, headers=RECORDER).json() == {"statusCode": 0}
    put = client.put(f"{OPS}/rec-1/media/a.mp3", content=b"0123456789", headers=RECORDER)
    assert put.status_code == 200
    return client


@pytest.fixture
def lenient(seeded: TestClient) -> TestClient:
    """The same app, but a server-side exception is answered instead of re-raised."""
    return TestClient(seeded.app, raise_server_exceptions=False)


# --------------------------------------------------------------------------- each statusCode


def test_status_1_missing_parameter(seeded: TestClient, settings: Settings) -> None:
    response = seeded.get("/api/v2/recordings", headers=ALICE)
    assert_gws_error(response, 400, 1, settings.data_dir)


def test_status_1_missing_id(seeded: TestClient, settings: Settings) -> None:
    doc = local_recording()
    del doc["id"]
    assert_gws_error(seeded.post(OPS, json=doc, headers=RECORDER), 400, 1, settings.data_dir)


def test_status_2_invalid_parameter(seeded: TestClient, settings: Settings) -> None:
    response = seeded.get("/api/v2/recordings", params={"startTime": "soon"}, headers=ALICE)
    assert_gws_error(response, 400, 2, settings.data_dir)


def test_status_2_storage_locations_are_not_echoed(seeded: TestClient, settings: Settings) -> None:
    for name in ("ops-create-recording.json", "ops-create-recording-webdav.json"):
        example = load_example(name)
        ccid = example.get("ccid", "cc1")
        response = seeded.post(
            f"/internal-api/contact-centers/{ccid}/recordings", json=example, headers=RECORDER
        )
        assert_gws_error(response, 400, 2, settings.data_dir)
        assert "gvp-callrecording" not in response.text
        assert "webdav" not in response.text.lower()
    bad_path = local_recording(
        "rec-2",
        mediaFiles=[
            {"mediaId": "x", "mediaDescriptor": {"storage": "local", "path": "../../var/x"}}
        ],
    )
    response = seeded.post(OPS, json=bad_path, headers=RECORDER)
    assert_gws_error(response, 400, 2, settings.data_dir)
    assert "../" not in response.text


def test_status_3_csrf(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    app = make_client(csrf=True)
    response = app.post(OPS, json=local_recording(), headers=RECORDER)
    assert_gws_error(response, 403, 3, tmp_path)


def test_status_5_permission(seeded: TestClient, settings: Settings) -> None:
    response = seeded.get("/api/v2/recordings/rec-1", headers=basic("sam"))
    assert_gws_error(response, 403, 5, settings.data_dir)
    ops = seeded.get(f"{OPS}/rec-1", headers=ALICE)
    assert_gws_error(ops, 403, 5, settings.data_dir)


def test_status_6_not_found(seeded: TestClient, settings: Settings) -> None:
    assert_gws_error(seeded.get("/api/v2/recordings/nope", headers=ALICE), 404, 6)
    response = seeded.get("/api/v2/recordings/rec-1/play/nope.mp3", headers=ALICE)
    assert_gws_error(response, 404, 6, settings.data_dir)


def test_status_6_media_file_missing_on_disk(seeded: TestClient, settings: Settings) -> None:
    descriptor = {"storage": "local", "path": "cc1/rec-9/gone.mp3"}
    doc = local_recording("rec-9", mediaFiles=[{"mediaId": "g.mp3", "mediaDescriptor": descriptor}])
    assert seeded.post(OPS, json=doc, headers=RECORDER).status_code == 200
    response = seeded.get("/api/v2/recordings/rec-9/play/g.mp3", headers=ALICE)
    assert_gws_error(response, 404, 6, settings.data_dir)
    assert "gone.mp3" not in response.text


def test_status_20_not_authenticated(seeded: TestClient, settings: Settings) -> None:
    response = seeded.get("/api/v2/recordings/rec-1")
    assert_gws_error(response, 401, 20, settings.data_dir)
    assert response.headers["www-authenticate"].lower().startswith("basic")
    wrong = seeded.get("/api/v2/recordings/rec-1", headers=basic("alice", "nope"))
    assert_gws_error(wrong, 401, 20, settings.data_dir)
    assert wrong.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize(
    "path",
    ["/", "/api", "/api/v2", "/api/v2/nothing", "/api/v3/recordings", "/internal-api/x", "/x.php"],
)
def test_unknown_route_is_404_status_6(seeded: TestClient, path: str) -> None:
    assert_gws_error(seeded.get(path, headers=ALICE), 404, 6)
    assert_gws_error(seeded.get(path), 404, 6)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v2/recordings/rec-1"),
        ("POST", "/api/v2/recordings"),
        ("PUT", "/api/v2/recordings/rec-1"),
        ("POST", "/api/v2/recordings/rec-1/play/a.mp3"),
        ("PUT", "/api/v2/me"),
        ("PATCH", f"{OPS}/rec-1"),
        ("POST", f"{OPS}/rec-1"),
        ("DELETE", OPS),
        ("GET", "/internal-api/contact-centers/cc1/recordings"),
        ("GET", f"{OPS}/rec-1/media/a.mp3"),
    ],
)
def test_wrong_method_is_405_status_2(
    seeded: TestClient, settings: Settings, method: str, path: str
) -> None:
    response = seeded.request(method, path, headers=RECORDER)
    assert_gws_error(response, 405, 2, settings.data_dir)
    assert seeded.get(f"{OPS}/rec-1", headers=RECORDER).status_code == 200


def test_413_body_too_large(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    app = make_client(max_body_bytes=1024)
    doc = local_recording(padding="x" * 4096)
    assert_gws_error(app.post(OPS, json=doc, headers=RECORDER), 413, 2, tmp_path)


def test_413_upload_too_large(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    app = make_client(max_upload_bytes=8)
    doc = local_recording("rec-1")
    assert app.post(OPS, json=doc, headers=RECORDER).status_code == 200
    response = app.put(f"{OPS}/rec-1/media/a.mp3", content=b"x" * 9, headers=RECORDER)
    assert_gws_error(response, 413, 2, tmp_path)


def test_416_range_not_satisfiable(seeded: TestClient, settings: Settings) -> None:
    response = seeded.get(
        "/api/v2/recordings/rec-1/play/a.mp3", headers={**ALICE, "Range": "bytes=50-60"}
    )
    assert_gws_error(response, 416, 2, settings.data_dir)
    assert response.headers["content-range"] == "bytes */10"


# --------------------------------------------------------------------------- 500


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("SELECT secret FROM /var/lib/x")


async def _async_boom(*args: Any, **kwargs: Any) -> Any:
    _boom()


def test_500_never_leaks(
    lenient: TestClient,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(services.store, "get", _boom)
    monkeypatch.setattr(services.store, "peek_stored", _boom)  # reads on the event loop
    monkeypatch.setattr(services.store, "fetch_stored", _async_boom)
    with caplog.at_level(logging.ERROR):
        response = lenient.get("/api/v2/recordings/rec-1", headers=ALICE)
    assert_gws_error(response, 500, 4, settings.data_dir)
    # The details go to the server log instead.
    assert "SELECT secret" in caplog.text
    for path in ("/api/v2/recordings/rec-1/play/a.mp3", f"{OPS}/rec-1"):
        headers = RECORDER if path.startswith(OPS) else ALICE
        assert_gws_error(lenient.get(path, headers=headers), 500, 4, settings.data_dir)


def test_500_from_search_and_write_never_leaks(
    lenient: TestClient,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(services.store, "search_stored", _boom)
    monkeypatch.setattr(services.store, "upsert", _boom)
    monkeypatch.setattr(services.store, "delete", _boom)
    found = lenient.get("/api/v2/recordings", params={"startTime": "0"}, headers=ALICE)
    assert_gws_error(found, 500, 4, settings.data_dir)
    posted = lenient.post(OPS, json=local_recording("rec-2"), headers=RECORDER)
    assert_gws_error(posted, 500, 4, settings.data_dir)
    deleted = lenient.delete(f"{OPS}/rec-1", headers=RECORDER)
    assert_gws_error(deleted, 500, 4, settings.data_dir)


def test_storage_failure_is_status_4_without_paths(
    lenient: TestClient,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_stat(key: str) -> Any:
        raise OSError(5, "Input/output error", str(settings.resolved_media_dir / key))

    def broken_use(key: str, use: Any) -> Any:
        raise OSError(5, "Input/output error", str(settings.resolved_media_dir / key))

    local = services.storages.get("local")
    monkeypatch.setattr(local, "stat", broken_stat)
    monkeypatch.setattr(local, "use_file", broken_use)  # how play opens files on a disk
    response = lenient.get("/api/v2/recordings/rec-1/play/a.mp3", headers=ALICE)
    assert response.status_code in (500, 502, 504)
    assert_gws_error(response, response.status_code, 4, settings.data_dir)


def test_healthz_reports_a_broken_database_without_details(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services.store, "ping", _boom)
    assert_gws_error(client.get("/healthz"), 503, 4)


# --------------------------------------------------------------------------- malformed input


def post_raw(client: TestClient, content: bytes) -> Any:
    headers = {**RECORDER, "Content-Type": "application/json"}
    return client.post(OPS, content=content, headers=headers)


@pytest.mark.parametrize(
    "content",
    [
        b'{"id": "rec-2", "region": "\xff\xfe", "startTime": "2013-05-17T19:45:32Z"}',
        b'{"id": "rec-2\xc3", "region": "usw1"}',
        b"\xed\xa0\x80",
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":' + b"9" * 30 + b"}",
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":18446744073709551616}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":-9223372036854775809}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":1e400}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":12345678.123456789}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":9007199254740.993}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","n":1e-400}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","x":'
        + b"[" * 300
        + b"]" * 300
        + b"}",
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","x":'
        + b"[" * 64
        + b"]" * 64
        + b"}",
        b'[{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z"}, {"x":'
        + b'{"y":' * 253
        + b"1"
        + b"}" * 254
        + b"]",
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","x":"a\\u0000b"}',
        b'{"id":"rec-2\\u0000","region":"usw1","startTime":"2013-05-17T19:45:32Z"}',
        b'{"id":"rec-2","region":"usw1","startTime":"2013-05-17T19:45:32Z","x":"\\ud800"}',
        b"42",
        b'"x"',
        b"null",
        b"true",
        b"",
        b"\x00",
    ],
    ids=[
        "invalid-utf8-value",
        "truncated-utf8",
        "lone-surrogate-bytes",
        "open-brackets",
        "deep-brackets",
        "deep-objects",
        "30-digit-number",
        "2**64",
        "below-int64",
        "1e400",
        "17-digit-decimal",
        "16-digit-decimal",
        "underflow",
        "nested-300-deep",
        "nested-65-deep",
        "bulk-with-one-nested-too-deep",
        "nul-in-value",
        "nul-in-id",
        "lone-surrogate-escape",
        "number",
        "string",
        "null",
        "true",
        "empty",
        "nul-byte",
    ],
)
def test_malformed_body_is_4xx(seeded: TestClient, settings: Settings, content: bytes) -> None:
    response = post_raw(seeded, content)
    assert_4xx_gws(response, settings.data_dir)
    assert seeded.get(f"{OPS}/rec-2", headers=RECORDER).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/recordings?callerPhoneNumber=%FF"),
        ("GET", "/api/v2/recordings?callerPhoneNumber=%00"),
        ("GET", "/api/v2/recordings?userName=%FF"),
        ("GET", "/api/v2/recordings?userName=%00"),
        ("GET", "/api/v2/recordings?userName=Kim%00"),
        ("GET", "/api/v2/recordings?startTime=%FF"),
        ("GET", "/api/v2/recordings?endTime=%00"),
        ("GET", "/api/v2/recordings?startTime=0&cursor=%FF"),
        ("GET", "/api/v2/recordings?startTime=0&cursor=%00"),
        ("GET", "/api/v2/recordings?startTime=0&limit=%FF"),
        ("GET", "/api/v2/recordings?startTime=0&limit=%00"),
        ("GET", "/api/v2/recordings?%FF=%FF"),
        ("GET", "/api/v2/recordings?%00=1"),
        ("GET", "/api/v2/recordings?startTime=" + "9" * 200),
        ("GET", "/api/v2/recordings?endTime=-" + "9" * 200),
        ("GET", "/api/v2/recordings?startTime=0&limit=" + "9" * 5000),
        ("GET", "/api/v2/recordings?startTime=0&limit=" + "9" * 200),
        ("GET", "/api/v2/recordings?startTime=0&cursor=" + "A" * 50_000),
        ("GET", "/api/v2/recordings?userName=" + "*" * 50_000),
        ("GET", "/api/v2/recordings?callerPhoneNumber=" + "1*" * 20_000),
        ("GET", "/api/v2/recordings/%FF"),
        ("GET", "/api/v2/recordings/%00"),
        ("GET", "/api/v2/recordings/rec-1%00"),
        ("GET", "/api/v2/recordings/rec-1/play/%FF"),
        ("GET", "/api/v2/recordings/rec-1/play/%00"),
        ("HEAD", "/api/v2/recordings/rec-1/play/%00"),
        ("GET", "/api/v2/recordings/" + "r" * 60_000),
        ("GET", "/api/v2/ops/contact-centers/%FF/recordings/rec-1"),
        ("GET", "/api/v2/ops/contact-centers/%00/recordings/rec-1"),
        ("GET", "/api/v2/ops/contact-centers/%FF/recordings?startTime=0"),
        ("POST", "/api/v2/ops/contact-centers/%FF/recordings"),
        ("POST", "/api/v2/ops/contact-centers/%00/recordings"),
        ("POST", "/internal-api/contact-centers/cc%2F1/recordings"),
        ("DELETE", "/api/v2/ops/contact-centers/cc1/recordings/%FF"),
        ("DELETE", "/api/v2/ops/contact-centers/cc1/recordings/%00"),
        ("PUT", "/api/v2/ops/contact-centers/cc1/recordings/rec-1/media/%FF"),
        ("PUT", "/api/v2/ops/contact-centers/cc1/recordings/rec-1/media/a%00.mp3"),
        ("PUT", "/api/v2/ops/contact-centers/cc1/recordings/%FF/media/a.mp3"),
        ("PUT", "/api/v2/ops/contact-centers/%FF/recordings/rec-1/media/a.mp3"),
    ],
    ids=lambda value: value if len(value) < 80 else value[:60] + f"...({len(value)})",
)
def test_malformed_urls_are_4xx(
    seeded: TestClient, settings: Settings, method: str, path: str
) -> None:
    kwargs: dict[str, Any] = {}
    if method == "POST":
        kwargs["json"] = local_recording("rec-2")
    elif method == "PUT":
        kwargs["content"] = b"bytes"
    headers = RECORDER if "/ops/" in path or "/internal-api/" in path else ALICE
    response = seeded.request(method, path, headers=headers, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if method != "HEAD":
        assert_4xx_gws(response, settings.data_dir)
    # Nothing was written under a mangled name.
    stored = seeded.get(f"{OPS}/rec-1", headers=RECORDER).json()["recording"]
    assert [m["mediaId"] for m in stored["mediaFiles"]] == ["a.mp3"]


@pytest.mark.parametrize("name", ["callerPhoneNumber", "userName", "startTime", "cursor"])
def test_100_kb_query_value_is_4xx(seeded: TestClient, name: str) -> None:
    value = ("1" if name != "userName" else "a") * 100_000
    query = f"startTime=0&{name}={value}".encode()
    auth = {"authorization": ALICE["Authorization"].encode()}
    status, body = asgi_request(seeded.app, "GET", "/api/v2/recordings", query, auth)
    assert 400 <= status < 500, status
    parsed = json.loads(body)
    assert set(parsed) == {"statusCode", "statusMessage"}
    assert parsed["statusCode"] == 2
    assert_no_leak(body.decode())


@pytest.mark.parametrize(
    "headers",
    [
        {"Range": "bytes=0-" + "9" * 5000},
        {"Range": "bytes=" + "9" * 5000 + "-"},
        {"Range": "bytes=-" + "9" * 5000},
        {"Range": "bytes=" + "0" * 5000 + "1-2"},
        {"If-None-Match": '"' + "x" * 50_000 + '"'},
        {"If-Range": "x" * 50_000, "Range": "bytes=0-1"},
    ],
    ids=[
        "range-end-5000-digits",
        "range-start-5000-digits",
        "suffix-5000-digits",
        "leading-zeros",
        "long-if-none-match",
        "long-if-range",
    ],
)
def test_malformed_play_headers_never_500(
    seeded: TestClient, settings: Settings, headers: dict[str, str]
) -> None:
    response = seeded.get("/api/v2/recordings/rec-1/play/a.mp3", headers={**ALICE, **headers})
    assert response.status_code in (200, 206, 416), (response.status_code, response.text[:200])
    if response.status_code == 416:
        assert_gws_error(response, 416, 2, settings.data_dir)
    else:
        assert response.content in (b"0123456789", b"12")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + "A" * 100_000,
        "Basic " + "=" * 10,
        "Basic ====",
        "Basic AAAA" + "%00",
    ],
    ids=["huge", "padding", "only-padding", "percent"],
)
def test_malformed_authorization_is_401(seeded: TestClient, authorization: str) -> None:
    response = seeded.get("/api/v2/recordings/rec-1", headers={"Authorization": authorization})
    assert_gws_error(response, 401, 20)


@pytest.mark.parametrize(
    "authorization", ["Basic été".encode("latin-1"), "Basic été".encode(), b"Basic \xff\x00"]
)
def test_non_ascii_authorization_is_401(seeded: TestClient, authorization: bytes) -> None:
    status, body = asgi_request(
        seeded.app, "GET", "/api/v2/recordings/rec-1", headers={"authorization": authorization}
    )
    assert status == 401
    parsed = json.loads(body)
    assert parsed == {"statusCode": 20, "statusMessage": parsed["statusMessage"]}
