"""HTTP tests of playing media, SPEC §4: ranges, HEAD, validators, content types, safety."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.api import play as play_module
from callrec.api.play import ONE_SHOT
from callrec.media.local import LocalMediaStore
from callrec.services import Services
from callrec.settings import Settings
from conftest import PASSWORD, basic, local_recording

OPS = "/api/v2/ops/contact-centers/{ccid}/recordings"
PLAY = "/api/v2/recordings/{rec_id}/play/{media_id}"
RECORDER = basic("recorder")
ALICE = basic("alice")
DATA = bytes((i * 7 + i // 251) % 256 for i in range(1000))
SIZE = len(DATA)


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def add_media(
    client: TestClient,
    media_id: str = "a.mp3",
    data: Any = DATA,
    rec_id: str = "rec-1",
    ccid: str = "cc1",
    **fields: Any,
) -> None:
    """Declare a media file on a recording and upload its bytes."""
    doc = local_recording(rec_id, mediaFiles=[{"mediaId": media_id, **fields}])
    posted = client.post(OPS.format(ccid=ccid), json=doc, headers=RECORDER)
    assert posted.json() == {"statusCode": 0}, posted.text
    url = f"{OPS.format(ccid=ccid)}/{rec_id}/media/{quote(media_id, safe='')}"
    put = client.put(url, content=data, headers=RECORDER)
    assert put.status_code == 200, put.text


def play(
    client: TestClient,
    media_id: str = "a.mp3",
    rec_id: str = "rec-1",
    user: str = "alice",
    method: str = "GET",
    **headers: str,
) -> Any:
    url = PLAY.format(rec_id=rec_id, media_id=quote(media_id, safe=""))
    return client.request(method, url, headers={**basic(user), **headers})


def assert_error(response: Any, http_status: int, status_code: int) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == status_code
    assert isinstance(body["statusMessage"], str)


@pytest.fixture
def media(client: TestClient) -> TestClient:
    add_media(client, type="audio/mp3")
    return client


# --------------------------------------------------------------------------- whole file


def test_play_whole_file(media: TestClient) -> None:
    response = play(media)
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-length"] == str(SIZE)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"]
    assert response.headers["content-type"].split(";")[0] == "audio/mpeg"
    assert response.headers["content-disposition"].startswith("inline")
    assert 'filename="a.mp3"' in response.headers["content-disposition"]
    assert "content-range" not in response.headers


def test_etag_is_stable_and_changes_with_the_bytes(media: TestClient) -> None:
    first = play(media).headers["etag"]
    assert play(media).headers["etag"] == first
    url = f"{OPS.format(ccid='cc1')}/rec-1/media/a.mp3"
    put = media.put(url, content=b"new", headers=RECORDER)
    assert put.status_code == 200
    response = play(media)
    assert response.content == b"new"
    assert response.headers["etag"] != first


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=0-0", 0, 0),
        ("bytes=10-", 10, SIZE - 1),
        ("bytes=0-", 0, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),
        ("bytes=-1", SIZE - 1, SIZE - 1),
        ("bytes=-5000", 0, SIZE - 1),
        ("bytes=990-5000", 990, SIZE - 1),
        ("bytes=999-999", SIZE - 1, SIZE - 1),
        ("bytes=500-1000", 500, SIZE - 1),
        ("bytes=100-199", 100, 199),
    ],
)
def test_single_range(media: TestClient, header: str, start: int, end: int) -> None:
    response = play(media, Range=header)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == DATA[start : end + 1]


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=1000-1000", "bytes=5000-6000", "bytes=1000-2000", "bytes=-0"]
)
def test_unsatisfiable_range_is_416(media: TestClient, header: str) -> None:
    response = play(media, Range=header)
    assert_error(response, 416, 2)
    assert response.headers["content-range"] == f"bytes */{SIZE}"
    assert b"\x00\x07" not in response.content


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",
        "bytes=0-9, 20-29",
        "bytes=abc",
        "bytes=",
        "bytes",
        "items=0-5",
        "0-9",
        "bytes=9-3",
        "bytes=--1",
        "bytes=1-2-3",
        "bytes=0x10-0x20",
    ],
)
def test_multi_or_malformed_range_gets_the_whole_file(media: TestClient, header: str) -> None:
    response = play(media, Range=header)
    assert response.status_code == 200
    assert response.content == DATA
    assert "content-range" not in response.headers


# --------------------------------------------------------------------------- HEAD


def test_head_is_headers_only(media: TestClient) -> None:
    get = play(media)
    head = play(media, method="HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(SIZE)
    for name in ("etag", "content-type", "content-disposition", "accept-ranges"):
        assert head.headers[name] == get.headers[name], name


def test_head_with_range(media: TestClient) -> None:
    head = play(media, method="HEAD", Range="bytes=0-9")
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-length"] == "10"
    assert head.headers["content-range"] == f"bytes 0-9/{SIZE}"


def test_head_unknown_is_404(media: TestClient) -> None:
    assert play(media, "nope.mp3", method="HEAD").status_code == 404
    assert play(media, rec_id="nope", method="HEAD").status_code == 404


# --------------------------------------------------------------------------- validators


def test_if_none_match_gives_304(media: TestClient) -> None:
    etag = play(media).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = play(media, **{"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    assert play(media, method="HEAD", **{"If-None-Match": etag}).status_code == 304
    changed = play(media, **{"If-None-Match": '"something-else"'})
    assert changed.status_code == 200
    assert changed.content == DATA


def test_if_range(media: TestClient) -> None:
    etag = play(media).headers["etag"]
    same = play(media, Range="bytes=0-9", **{"If-Range": etag})
    assert same.status_code == 206
    assert same.content == DATA[:10]
    other = play(media, Range="bytes=0-9", **{"If-Range": '"stale-version"'})
    assert other.status_code == 200
    assert other.content == DATA
    assert "content-range" not in other.headers


# --------------------------------------------------------------------------- content type


@pytest.mark.parametrize(
    ("media_id", "fields", "expected"),
    [
        ("a.mp3", {"type": "audio/mp3"}, "audio/mpeg"),
        ("a.mp3", {"type": "audio/mpeg"}, "audio/mpeg"),
        ("a.mp3", {"type": "audio/mpeg3"}, "audio/mpeg"),
        ("a.mp3", {"type": "audio/x-mp3"}, "audio/mpeg"),
        ("a.wav", {"type": "audio/wav"}, "audio/wav"),
        ("a.wav", {"type": "audio/x-wav"}, "audio/wav"),
        ("a.wav", {"type": "audio/wave"}, "audio/wav"),
        ("a.ogg", {"type": "audio/ogg"}, "audio/ogg"),
        ("a.mp4", {"type": "video/mp4"}, "video/mp4"),
        ("a.mp3", {}, "audio/mpeg"),
        ("a.wav", {}, "audio/wav"),
        (
            "a.mp3",
            {"type": "audio/mp3", "pkcs7": "MIIBsQYJ"},
            "application/octet-stream",
        ),
        ("a.bin", {"type": "video/mp4", "pkcs7": "MIIB"}, "application/octet-stream"),
    ],
)
def test_content_type_mapping(
    client: TestClient, media_id: str, fields: dict[str, Any], expected: str
) -> None:
    add_media(client, media_id, **fields)
    response = play(client, media_id)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0].strip() == expected
    assert response.content == DATA


def test_encrypted_media_is_served_as_stored(client: TestClient) -> None:
    add_media(client, "enc.mp3", data=b"\x30\x82encrypted", type="audio/mp3", pkcs7="MIIB")
    response = play(client, "enc.mp3")
    assert response.content == b"\x30\x82encrypted"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("media_id", ["appel-été.mp3", "通話.mp3", 'we"ird;name.mp3', "a b.mp3"])
def test_content_disposition_with_non_ascii_or_special_names(
    client: TestClient, media_id: str
) -> None:
    add_media(client, media_id, type="audio/mp3")
    response = play(client, media_id)
    assert response.status_code == 200
    assert response.content == DATA
    disposition = response.headers["content-disposition"]
    disposition.encode("latin-1")  # a header value a client can decode
    assert disposition.startswith("inline;")
    assert "filename=" in disposition
    assert f"filename*=UTF-8''{quote(media_id, safe='')}" in disposition


def test_media_uri_of_the_recording_plays(client: TestClient) -> None:
    add_media(client, "appel-été #1.mp3", type="audio/mp3")
    recording = client.get("/api/v2/recordings/rec-1", headers=ALICE).json()["recording"]
    [media] = recording["mediaFiles"]
    response = client.get(media["mediaUri"], headers=ALICE)
    assert response.status_code == 200
    assert response.content == DATA
    via_path = client.get("/api/v2" + media["mediaPath"], headers=ALICE)
    assert via_path.content == DATA


@pytest.mark.parametrize(
    ("asked", "found"),
    [("a.mp3", True), ("a", True), ("a.wav", False), ("a.mp3.mp3", False), ("A.mp3", False)],
)
def test_media_id_with_or_without_extension(media: TestClient, asked: str, found: bool) -> None:
    response = play(media, asked)
    if found:
        assert response.status_code == 200
        assert response.content == DATA
    else:
        assert_error(response, 404, 6)


def test_media_id_with_dots_without_extension(client: TestClient) -> None:
    media_id = "callrec.008E0149-12132920.141216184241.mp3"
    add_media(client, media_id, type="audio/mp3")
    assert play(client, media_id).content == DATA
    assert play(client, media_id.removesuffix(".mp3")).content == DATA


# --------------------------------------------------------------------------- not found


def test_unknown_recording_or_media_is_404(media: TestClient) -> None:
    assert_error(play(media, rec_id="nope"), 404, 6)
    assert_error(play(media, "nope.mp3"), 404, 6)
    assert_error(play(media, ""), 404, 6)


def test_media_declared_but_not_uploaded_is_404(client: TestClient) -> None:
    doc = local_recording("rec-1", mediaFiles=[{"mediaId": "later.mp3", "type": "audio/mp3"}])
    assert client.post(OPS.format(ccid="cc1"), json=doc, headers=RECORDER).status_code == 200
    assert_error(play(client, "later.mp3"), 404, 6)
    head = play(client, "later.mp3", method="HEAD")
    assert head.status_code == 404


def test_media_located_on_a_missing_local_file_is_404(client: TestClient) -> None:
    media_files = [
        {"mediaId": "gone.mp3", "mediaDescriptor": {"storage": "local", "path": "cc1/gone.mp3"}}
    ]
    doc = local_recording("rec-1", mediaFiles=media_files)
    assert client.post(OPS.format(ccid="cc1"), json=doc, headers=RECORDER).status_code == 200
    response = play(client, "gone.mp3")
    assert_error(response, 404, 6)
    assert "cc1/gone.mp3" not in response.text


def test_another_tenants_recording_is_404(media: TestClient) -> None:
    assert_error(play(media, user="bob"), 404, 6)
    assert play(media, user="bob", method="HEAD").status_code == 404
    # bob's own rec-1 is another recording with other bytes.
    add_media(media, data=b"bob's", ccid="cc2")
    assert play(media, user="bob").content == b"bob's"
    assert play(media, user="alice").content == DATA


def test_ops_account_plays_with_contact_center_id(media: TestClient) -> None:
    url = PLAY.format(rec_id="rec-1", media_id="a.mp3")
    response = media.get(url, params={"contactCenterId": "cc1"}, headers=RECORDER)
    assert response.content == DATA
    assert_error(media.get(url, headers=RECORDER), 400, 1)
    ops_play = media.get(f"{OPS.format(ccid='cc1')}/rec-1/play/a.mp3", headers=RECORDER)
    assert ops_play.content == DATA
    ranged = media.get(
        f"{OPS.format(ccid='cc1')}/rec-1/play/a", headers={**RECORDER, "Range": "bytes=-3"}
    )
    assert ranged.status_code == 206
    assert ranged.content == DATA[-3:]


# --------------------------------------------------------------------------- traversal


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/recordings/rec-1/play/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v2/recordings/rec-1/play/..%2F..%2Fcallrec.db",
        "/api/v2/recordings/rec-1/play/%2E%2E",
        "/api/v2/recordings/rec-1/play/..%5C..%5Cetc%5Cpasswd",
        "/api/v2/recordings/rec-1/play/a.mp3%00",
        "/api/v2/recordings/rec-1/play/%00",
        "/api/v2/recordings/rec-1/play/a.mp3%00.txt",
        "/api/v2/recordings/..%2F..%2Fetc/play/passwd",
        "/api/v2/recordings/%2E%2E/play/a.mp3",
        "/api/v2/recordings/rec-1%00/play/a.mp3",
        "/api/v2/recordings/rec-1/play/%2Fetc%2Fpasswd",
        "/api/v2/recordings/rec-1/play/%252E%252E%252Fetc%252Fpasswd",
    ],
)
def test_traversal_in_the_url_never_serves_files(media: TestClient, path: str) -> None:
    response = media.get(path, headers=ALICE)
    assert 400 <= response.status_code < 500, response.status_code
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert b"root:" not in response.content
    assert b"SQLite" not in response.content


def test_symlink_out_of_the_media_store_is_not_followed(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_bytes(b"TOP SECRET")
    media_dir = settings.resolved_media_dir
    media_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, media_dir / "link.mp3")
    descriptor = {"storage": "local", "path": "link.mp3"}
    media_files = [{"mediaId": "l.mp3", "mediaDescriptor": descriptor}]
    doc = local_recording("rec-1", mediaFiles=media_files)
    posted = client.post(OPS.format(ccid="cc1"), json=doc, headers=RECORDER)
    if posted.status_code == 200:
        response = play(client, "l.mp3")
        assert 400 <= response.status_code < 500
        assert b"TOP SECRET" not in response.content
        assert set(response.json()) == {"statusCode", "statusMessage"}
    else:
        assert posted.json()["statusCode"] == 2


# --------------------------------------------------------------------------- large file


def test_large_upload_plays_back_identically(client: TestClient) -> None:
    data = random.Random(5).randbytes(5 * 1024 * 1024 + 123)
    chunks = iter([data[i : i + 65536] for i in range(0, len(data), 65536)])
    add_media(client, "big.wav", data=chunks, type="audio/wav")
    whole = play(client, "big.wav")
    assert whole.status_code == 200
    assert whole.headers["content-length"] == str(len(data))
    assert whole.content == data
    for start, end in [(0, 0), (262_000, 530_000), (1_000_000, 2_048_575), (len(data) - 7, None)]:
        header = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        last = len(data) - 1 if end is None else end
        response = play(client, "big.wav", Range=header)
        assert response.status_code == 206
        assert response.headers["content-range"] == f"bytes {start}-{last}/{len(data)}"
        assert response.content == data[start : last + 1]
    suffix = play(client, "big.wav", Range="bytes=-300000")
    assert suffix.content == data[-300_000:]


@pytest.mark.parametrize(
    ("declared", "media_id"),
    [("text/html", "x.html"), ("image/svg+xml", "x.svg"), (None, "x.html"), ("text/plain", "a")],
)
def test_media_is_never_served_as_a_page(
    client: TestClient, declared: str | None, media_id: str
) -> None:
    fields = {"type": declared} if declared else {}
    add_media(client, media_id, b"<script>alert(1)</script>", **fields)
    response = client.get(f"/api/v2/recordings/rec-1/play/{media_id}", headers=ALICE)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("sandbox")


# --------------------------------------------------------------------------- local fast path


def media_file(services: Services, media_id: str = "a.mp3") -> Path:
    """Where the local store keeps the bytes of ``media_id`` of cc1's rec-1."""
    doc = services.store.get("cc1", "rec-1")
    assert doc is not None
    [media] = [m for m in doc["mediaFiles"] if m["mediaId"] == media_id]
    store = services.storages.get("local")
    assert isinstance(store, LocalMediaStore)
    return store.path(media["mediaDescriptor"]["path"])


MEDIA_HEADERS = {
    "accept-ranges": "bytes",
    "cache-control": "private, max-age=0",
    "x-content-type-options": "nosniff",
    "content-security-policy": "sandbox; default-src 'none'",
    "content-type": "audio/mpeg",
    "content-disposition": "inline; filename=\"a.mp3\"; filename*=UTF-8''a.mp3",
}


@pytest.mark.parametrize(
    ("method", "headers", "status", "length", "content_range"),
    [
        ("GET", {}, 200, SIZE, None),
        ("HEAD", {}, 200, SIZE, None),
        ("GET", {"Range": "bytes=10-19"}, 206, 10, f"bytes 10-19/{SIZE}"),
        ("HEAD", {"Range": "bytes=-5"}, 206, 5, f"bytes {SIZE - 5}-{SIZE - 1}/{SIZE}"),
        ("GET", {"Range": "bytes=995-"}, 206, 5, f"bytes 995-999/{SIZE}"),
    ],
)
def test_every_answer_carries_the_media_headers(
    media: TestClient,
    method: str,
    headers: dict[str, str],
    status: int,
    length: int,
    content_range: str | None,
) -> None:
    response = play(media, method=method, **headers)
    assert response.status_code == status
    for name, value in MEDIA_HEADERS.items():
        assert response.headers[name] == value, name
    assert response.headers["etag"].startswith('"')
    assert response.headers["content-length"] == str(length)
    assert response.headers.get("content-range") == content_range
    assert len(response.content) == (0 if method == "HEAD" else length)


def test_not_modified_carries_the_validators_and_no_body(media: TestClient) -> None:
    etag = play(media).headers["etag"]
    for method in ("GET", "HEAD"):
        response = play(media, method=method, Range="bytes=0-9", **{"If-None-Match": etag})
        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "content-type" not in response.headers
        assert "content-range" not in response.headers


def test_if_range_with_a_range_past_the_end(media: TestClient) -> None:
    etag = play(media).headers["etag"]
    assert_error(play(media, Range="bytes=5000-", **{"If-Range": etag}), 416, 2)
    other = play(media, Range="bytes=5000-", **{"If-Range": '"other"'})
    assert other.status_code == 200
    assert other.content == DATA


def test_a_file_replaced_or_deleted_after_being_played(
    media: TestClient, services: Services
) -> None:
    first = play(media, Range="bytes=0-9")
    assert first.content == DATA[:10]
    path = media_file(services)
    fresh = path.with_name("fresh.tmp")
    fresh.write_bytes(b"replaced on disk")
    os.replace(fresh, path)
    again = play(media, Range="bytes=0-7")
    assert again.status_code == 206
    assert again.content == b"replaced"
    assert again.headers["content-range"] == "bytes 0-7/16"
    assert again.headers["etag"] != first.headers["etag"]
    path.unlink()
    for method in ("GET", "HEAD"):
        gone = play(media, method=method, Range="bytes=0-7")
        assert gone.status_code == 404
    assert_error(play(media), 404, 6)


def test_a_recording_deleted_after_being_played_is_404(media: TestClient) -> None:
    assert play(media, Range="bytes=0-9").status_code == 206
    deleted = media.delete(f"{OPS.format(ccid='cc1')}/rec-1", headers=RECORDER)
    assert deleted.status_code == 200, deleted.text
    assert_error(play(media, Range="bytes=0-9"), 404, 6)


def test_an_empty_file(client: TestClient) -> None:
    add_media(client, "empty.mp3", data=b"", type="audio/mpeg")
    for method in ("GET", "HEAD"):
        response = play(client, "empty.mp3", method=method)
        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == "0"
        assert response.headers["content-type"] == "audio/mpeg"
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        response = play(client, "empty.mp3", Range=header)
        assert_error(response, 416, 2)
        assert response.headers["content-range"] == "bytes */0"


BIGGER = 2 * ONE_SHOT + 5


@pytest.fixture
def bigger(client: TestClient) -> bytes:
    data = random.Random(11).randbytes(BIGGER)
    add_media(client, "big.wav", data=data, type="audio/wav")
    return data


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        (f"bytes=0-{ONE_SHOT - 1}", 0, ONE_SHOT - 1),
        (f"bytes=0-{ONE_SHOT}", 0, ONE_SHOT),
        (f"bytes=1-{ONE_SHOT}", 1, ONE_SHOT),
        (f"bytes={ONE_SHOT - 1}-{2 * ONE_SHOT}", ONE_SHOT - 1, 2 * ONE_SHOT),
        (f"bytes=-{ONE_SHOT}", BIGGER - ONE_SHOT, BIGGER - 1),
        (f"bytes=-{ONE_SHOT + 1}", BIGGER - ONE_SHOT - 1, BIGGER - 1),
        (f"bytes={BIGGER - ONE_SHOT}-", BIGGER - ONE_SHOT, BIGGER - 1),
        (f"bytes={BIGGER - 1}-{BIGGER + 1000}", BIGGER - 1, BIGGER - 1),
        ("bytes=0-", 0, BIGGER - 1),
    ],
)
@pytest.mark.parametrize("page_cache", [True, False])
def test_ranges_around_the_one_message_size(
    client: TestClient,
    bigger: bytes,
    monkeypatch: pytest.MonkeyPatch,
    header: str,
    start: int,
    end: int,
    page_cache: bool,
) -> None:
    if not page_cache:  # as if the bytes were on disk only: read in a thread, streamed
        monkeypatch.setattr(play_module, "read_cached", lambda fd, size, offset: None)
    response = play(client, "big.wav", Range=header)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{BIGGER}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == bigger[start : end + 1]
    assert_error(play(client, "big.wav", Range=f"bytes={BIGGER}-"), 416, 2)


def asgi_play(app: Any, method: str = "GET", **headers: str) -> list[dict[str, Any]]:
    """The ASGI messages the application sends for a play of cc1's rec-1/a.mp3."""
    path = PLAY.format(rec_id="rec-1", media_id="a.mp3")
    raw = [(k.lower().encode(), v.encode()) for k, v in {**ALICE, **headers}.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *raw],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 5000),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent


def test_a_small_local_range_is_one_body_message(media: TestClient) -> None:
    sent = asgi_play(media.app, Range="bytes=100-199")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 206
    assert sent[1]["body"] == DATA[100:200]
    assert not sent[1].get("more_body", False)
    head = asgi_play(media.app, "HEAD", Range="bytes=100-199")
    assert [m.get("body", b"") for m in head[1:]] == [b""]
    assert (b"content-length", b"100") in head[0]["headers"]


def test_a_local_store_on_a_network_file_system_plays_the_same(
    media: TestClient, services: Services
) -> None:
    requests: list[dict[str, str]] = [
        {},
        {"Range": "bytes=0-9"},
        {"Range": "bytes=-10"},
        {"Range": "bytes=990-"},
        {"Range": "bytes=1000-"},
        {"Range": "bytes=0-1,5-6"},
        {"Range": "bytes=0-9", "If-Range": '"stale"'},
    ]

    def answers() -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        for method in ("GET", "HEAD"):
            for headers in requests:
                r = play(media, method=method, **headers)
                kept = {k: v for k, v in r.headers.items() if k != "date"}
                out.append((r.status_code, kept, r.content))
        return out

    on_loop = answers()
    store = services.storages.get("local")
    assert isinstance(store, LocalMediaStore)
    store.on_loop = False  # every file operation in a worker thread, nothing kept open
    assert answers() == on_loop
