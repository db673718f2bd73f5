"""The API over WebDAV and S3 storages (real servers: wsgidav, moto or MinIO), SPEC §4-§5:
ingest resolves locations without fetching them, play streams ranged reads, HEAD fetches no
bytes, storage failures are 502/504 GWS errors, uploads go to the configured storage, delete
follows the ownership policy; and, on a live server, disconnects and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

import callrec.server
from callrec.app import create_app
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import User
from conftest import ACCOUNTS, PASSWORD, basic, load_example, local_recording
from storage_servers import (
    PASSWORD as DAV_PASSWORD,
)
from storage_servers import (
    S3,
    TcpProxy,
    WebDAV,
    closed_port,
    free_port,
    s3_server,
    wait_until,
    webdav_server,
)
from storage_servers import (
    USER as DAV_USER,
)

OPS = "/api/v2/ops/contact-centers/cc1/recordings"
INTERNAL = "/internal-api/contact-centers/cc1/recordings"
RECORDER, ALICE = basic("recorder"), basic("alice")
DATA = random.Random(3).randbytes(200_000)
HANG = 5.0


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAV]:
    with webdav_server(tmp_path_factory.mktemp("dav")) as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture
def dav_relay(dav: WebDAV) -> Iterator[TcpProxy]:
    relay = TcpProxy(dav.port)
    yield relay
    relay.close()


@pytest.fixture
def s3_relay(s3: S3) -> Iterator[TcpProxy]:
    relay = TcpProxy(int(s3.endpoint.rsplit(":", 1)[1]))
    yield relay
    relay.close()


@dataclass
class App:
    client: TestClient
    services: Services
    settings: Settings
    dav_url: str  # the WebDAV base URL as configured (through the relay)
    s3_endpoint: str


def storage_toml(dav_url: str, s3: S3, s3_endpoint: str, dav_password: str, secret: str) -> str:
    return f"""
[storages.dav]
type = "webdav"
url = "{dav_url}"
username = "{DAV_USER}"
password = "{dav_password}"

[storages.s3]
type = "s3"
endpoint_url = "{s3_endpoint}"
region = "{s3.region}"
bucket = "{s3.bucket}"
access_key_id = "{s3.access_key}"
secret_access_key = "{secret}"
"""


@pytest.fixture
def make_app(
    tmp_path: Path,
    dav: WebDAV,
    s3: S3,
    dav_relay: TcpProxy,
    s3_relay: TcpProxy,
    password_hash: str,
) -> Iterator[Callable[..., App]]:
    opened: list[App] = []

    def make(
        dav_port: int | None = None,
        s3_port: int | None = None,
        dav_password: str = DAV_PASSWORD,
        s3_secret: str | None = None,
        **fields: Any,
    ) -> App:
        dav_url = dav.url.replace(f":{dav.port}/", f":{dav_port or dav_relay.port}/")
        s3_endpoint = f"http://127.0.0.1:{s3_port or s3_relay.port}"
        config = tmp_path / f"storage-{len(opened)}.toml"
        config.write_text(
            storage_toml(dav_url, s3, s3_endpoint, dav_password, s3_secret or s3.secret_key)
        )
        config.chmod(0o600)
        settings = Settings(
            data_dir=tmp_path / f"data-{len(opened)}",
            storage_config=config,
            storage_timeout=fields.pop("storage_timeout", 5.0),
            **fields,
        )
        services = Services.open(settings)
        for name, (role, ccid) in ACCOUNTS.items():
            services.store.put_user(User(name, password_hash, role, ccid, name.title(), "T"))
        client = TestClient(create_app(settings, services), raise_server_exceptions=False)
        client.__enter__()
        app = App(client, services, settings, dav_url, s3_endpoint)
        opened.append(app)
        return app

    yield make
    for app in opened:
        # Close the storages' connections on the loop that used them, then the rest.
        app.client.portal.call(app.services.storages.aclose)  # type: ignore[union-attr]
        app.client.__exit__(None, None, None)
        app.services.close()


def unique(prefix: str = "rec") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def post(app: App, doc: Any, base: str = OPS) -> Any:
    return app.client.post(base, json=doc, headers=RECORDER)


def stored(app: App, rec_id: str) -> dict[str, Any]:
    response = app.client.get(f"{OPS}/{rec_id}", headers=RECORDER)
    assert response.status_code == 200, response.text
    recording: dict[str, Any] = response.json()["recording"]
    return recording


def assert_gws_error(response: Any, http: int, code: int, *leaks: str) -> None:
    assert response.status_code == http, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == code
    for leak in (*leaks, "127.0.0.1", "Traceback", DAV_PASSWORD):
        assert leak not in response.text


def place(kind: str, dav: WebDAV, s3: S3, name: str, data: bytes) -> dict[str, Any]:
    """Put a file on a storage as a recorder would; returns the descriptor it would post."""
    if kind == "dav":
        (dav.root / "voice").mkdir(exist_ok=True)
        (dav.root / "voice" / name).write_bytes(data)
        return {"storage": "webDAV", "path": f"/recordings/voice/{name}"}
    key = f"{s3.prefix}/{name}"
    s3.put(key, data)
    return {"storage": "awsS3", "path": key, "data": {"bucket": s3.bucket}}


def with_media(app: App, descriptor: dict[str, Any], rec_id: str, **media: Any) -> None:
    doc = local_recording(
        rec_id,
        mediaFiles=[
            {"mediaId": "call.mp3", "type": "audio/mp3", "mediaDescriptor": descriptor, **media}
        ],
    )
    response = post(app, doc)
    assert response.json() == {"statusCode": 0}, response.text


def play(app: App, rec_id: str, method: str = "GET", **headers: str) -> Any:
    url = f"/api/v2/recordings/{rec_id}/play/call.mp3"
    return app.client.request(method, url, headers={**ALICE, **headers})


# --------------------------------------------------------------------------- ingest


def test_the_webdav_example_resolves_without_contacting_the_storage(
    make_app: Callable[..., App], dav_relay: TcpProxy
) -> None:
    app = make_app()
    example = load_example("ops-create-recording-webdav.json")
    sent = example["mediaFiles"][0]["mediaUri"]
    uri = sent.replace("http://webdav.example.internal/recordings/", app.dav_url)
    example["mediaFiles"][0]["mediaUri"] = uri
    assert post(app, example, INTERNAL).json() == {"statusCode": 0}
    [media] = stored(app, example["id"])["mediaFiles"]
    assert media["mediaDescriptor"] == {
        "storage": "dav",
        "path": "voice/4f82ee48-4fe4-40e1-961d-309ba6e38698.mp3",
    }
    assert media["originalMediaDescriptor"] == {"mediaUri": uri}
    external = app.client.get(f"/api/v2/recordings/{example['id']}", headers=ALICE)
    [shown] = external.json()["recording"]["mediaFiles"]
    assert shown["mediaUri"].endswith(f"/api/v2/recordings/{example['id']}/play/{media['mediaId']}")
    assert app.dav_url not in external.text
    assert "mediaDescriptor" not in external.text
    assert dav_relay.requests == []  # never fetched a URL it was handed


def test_the_s3_example_resolves_without_contacting_the_storage(
    make_app: Callable[..., App], s3: S3, s3_relay: TcpProxy
) -> None:
    app = make_app()
    example = load_example("ops-create-recording.json")
    ccid = example["ccid"]
    example["mediaFiles"][0]["mediaDescriptor"]["data"]["bucket"] = s3.bucket
    response = app.client.post(
        f"/internal-api/contact-centers/{ccid}/recordings", json=example, headers=RECORDER
    )
    assert response.json() == {"statusCode": 0}, response.text
    got = app.client.get(
        f"/api/v2/ops/contact-centers/{ccid}/recordings/{example['id']}", headers=RECORDER
    )
    [media] = got.json()["recording"]["mediaFiles"]
    assert media["mediaDescriptor"] == {
        "storage": "s3",
        "path": example["mediaFiles"][0]["mediaDescriptor"]["path"],
    }
    assert s3_relay.requests == []


@pytest.mark.parametrize(
    "location",
    [
        {"mediaUri": "http://127.0.0.1:{other}/recordings/voice/1.mp3"},
        {"mediaUri": "http://169.254.169.254/latest/meta-data/"},
        {"mediaDescriptor": {"storage": "webDAV", "path": "http://127.0.0.1:{other}/x.mp3"}},
        {"mediaDescriptor": {"storage": "awsS3", "path": "x", "data": {"bucket": "not-ours"}}},
    ],
)
def test_locations_outside_the_storages_are_refused_and_never_fetched(
    make_app: Callable[..., App], dav_relay: TcpProxy, location: dict[str, Any]
) -> None:
    app = make_app()
    other = closed_port()
    with socket.create_server(("127.0.0.1", other)) as trap:  # would see any connection
        trap.settimeout(0.01)
        raw = {
            k: (
                v.format(other=other)
                if isinstance(v, str)
                else {**v, "path": str(v["path"]).format(other=other)}
            )
            for k, v in location.items()
        }
        doc = local_recording(unique(), mediaFiles=[{"mediaId": "a.mp3", **raw}])
        response = post(app, doc)
        assert_gws_error(response, 400, 2, "169.254", str(other))
        with pytest.raises(TimeoutError):
            trap.accept()
    assert dav_relay.requests == []


# --------------------------------------------------------------------------- play


@pytest.mark.parametrize("kind", ["dav", "s3"])
def test_play_streams_ranged_reads_from_the_storage(
    make_app: Callable[..., App],
    dav: WebDAV,
    s3: S3,
    dav_relay: TcpProxy,
    s3_relay: TcpProxy,
    kind: str,
) -> None:
    app = make_app()
    relay = dav_relay if kind == "dav" else s3_relay
    rec_id = unique()
    with_media(app, place(kind, dav, s3, f"{rec_id}.mp3", DATA), rec_id)

    whole = play(app, rec_id)
    assert whole.status_code == 200
    assert whole.content == DATA
    assert whole.headers["content-length"] == str(len(DATA))
    assert whole.headers["content-type"] == "audio/mpeg"
    assert whole.headers["accept-ranges"] == "bytes"
    etag = whole.headers["etag"]

    relay.requests.clear()
    before = relay.bytes_back
    part = play(app, rec_id, Range="bytes=1000-1999")
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    assert part.content == DATA[1000:2000]
    assert [r.split(b" ", 1)[0] for r in relay.requests] == [b"HEAD", b"GET"]
    assert b"range: bytes=1000-1999" in relay.requests[1].lower()
    assert relay.bytes_back - before < 1000 + 4096  # the range, not the file

    tail = play(app, rec_id, Range="bytes=-100")
    assert (tail.status_code, tail.content) == (206, DATA[-100:])
    beyond = play(app, rec_id, Range=f"bytes={len(DATA)}-")
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(DATA)}"

    relay.requests.clear()
    before = relay.bytes_back
    for response in (
        play(app, rec_id, "HEAD"),
        play(app, rec_id, "HEAD", Range="bytes=0-9"),
        play(app, rec_id, **{"If-None-Match": etag}),
    ):
        assert response.status_code in (200, 206, 304)
        assert response.content == b""
    assert {r.split(b" ", 1)[0] for r in relay.requests} == {b"HEAD"}  # no byte fetched
    assert relay.bytes_back - before < 3 * 1024


@pytest.mark.parametrize("kind", ["dav", "s3"])
def test_a_file_missing_at_the_storage_is_404(
    make_app: Callable[..., App], dav: WebDAV, s3: S3, kind: str
) -> None:
    app = make_app()
    rec_id = unique()
    descriptor = place(kind, dav, s3, f"{rec_id}.mp3", b"x")
    descriptor["path"] = descriptor["path"].replace(rec_id, rec_id + "-gone")
    with_media(app, descriptor, rec_id)
    assert_gws_error(play(app, rec_id), 404, 6)


@pytest.mark.parametrize("kind", ["dav", "s3"])
def test_storage_failures_are_gws_errors_without_details(
    make_app: Callable[..., App],
    dav: WebDAV,
    s3: S3,
    dav_relay: TcpProxy,
    s3_relay: TcpProxy,
    kind: str,
) -> None:
    rec_id = unique()
    descriptor = place(kind, dav, s3, f"{rec_id}.mp3", DATA)
    port = {"dav_port" if kind == "dav" else "s3_port": closed_port()}
    down = make_app(**port)
    with_media(down, descriptor, rec_id)
    assert_gws_error(play(down, rec_id), 502, 4, rec_id)
    assert play(down, rec_id, "HEAD").status_code == 502

    wrong = make_app(dav_password="wrong-Pw-1", s3_secret="wrong-Secret-1")
    with_media(wrong, descriptor, rec_id)
    assert_gws_error(play(wrong, rec_id), 502, 4, "wrong-Pw-1", "wrong-Secret-1")

    slow = make_app(storage_timeout=0.5)
    with_media(slow, descriptor, rec_id)
    (dav_relay if kind == "dav" else s3_relay).stall = True
    started = time.monotonic()
    response = play(slow, rec_id)
    assert time.monotonic() - started < HANG
    assert_gws_error(response, 504, 4)
    assert response.json()["statusMessage"] == "Media storage timed out"


# --------------------------------------------------------------------------- uploads, delete


@pytest.mark.parametrize("kind", ["dav", "s3"])
def test_uploads_go_to_the_configured_storage(
    make_app: Callable[..., App], dav: WebDAV, s3: S3, kind: str
) -> None:
    app = make_app(upload_storage=kind)
    rec_id = unique()
    assert post(app, local_recording(rec_id)).json() == {"statusCode": 0}
    put = app.client.put(f"{OPS}/{rec_id}/media/call.mp3", content=DATA, headers=RECORDER)
    assert put.json() == {"statusCode": 0, "size": len(DATA)}
    [media] = stored(app, rec_id)["mediaFiles"]
    key = f"cc1/{rec_id}/call.mp3"
    assert media["mediaDescriptor"] == {"storage": kind, "path": key}
    assert media["size"] == str(len(DATA))
    if kind == "dav":
        assert (dav.root / key).read_bytes() == DATA
    else:
        assert s3.get(key) == DATA
    assert play(app, rec_id).content == DATA
    assert not (app.settings.resolved_media_dir / key).exists()  # not in the local store
    # It is callrec's own file: deleting the recording deletes it, whatever the setting.
    assert app.client.delete(f"{OPS}/{rec_id}", headers=RECORDER).json() == {"statusCode": 0}
    assert not ((dav.root / key).exists() if kind == "dav" else s3.exists(key))


@pytest.mark.parametrize("delete_external", [False, True])
def test_delete_removes_external_media_only_when_so_configured(
    make_app: Callable[..., App], dav: WebDAV, s3: S3, delete_external: bool
) -> None:
    app = make_app(delete_external_media=delete_external)
    rec_id = unique()
    on_dav = place("dav", dav, s3, f"{rec_id}.mp3", b"dav bytes")
    on_s3 = place("s3", dav, s3, f"{rec_id}.mp3", b"s3 bytes")
    local = app.settings.resolved_media_dir / "cc1" / "imports" / f"{rec_id}.mp3"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"local bytes")
    doc = local_recording(
        rec_id,
        mediaFiles=[
            {"mediaId": "a.mp3", "mediaDescriptor": on_dav},
            {"mediaId": "b.mp3", "mediaDescriptor": on_s3},
            {
                "mediaId": "c.mp3",
                "mediaDescriptor": {"storage": "local", "path": f"cc1/imports/{rec_id}.mp3"},
            },
        ],
    )
    assert post(app, doc).json() == {"statusCode": 0}
    assert app.client.delete(f"{OPS}/{rec_id}", headers=RECORDER).json() == {"statusCode": 0}
    assert (dav.root / "voice" / f"{rec_id}.mp3").exists() is not delete_external
    assert s3.exists(on_s3["path"]) is not delete_external
    assert local.exists()  # files in local directories that callrec did not upload: never


def test_delete_succeeds_when_the_storage_is_down(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(dav_port=closed_port(), delete_external_media=True)
    rec_id = unique()
    with_media(app, {"storage": "webDAV", "path": "/recordings/voice/x.mp3"}, rec_id)
    response = app.client.delete(f"{OPS}/{rec_id}", headers=RECORDER)
    assert response.json() == {"statusCode": 0}
    assert app.client.get(f"{OPS}/{rec_id}", headers=RECORDER).status_code == 404
    assert "not deleted" in caplog.text


# --------------------------------------------------------------------------- a live server


@contextlib.contextmanager
def live(settings: Settings, services: Services) -> Iterator[int]:
    """The app on the server ``callrec serve`` runs, in a thread with an event loop of its
    own; the storages are closed on that loop."""
    port = free_port()
    server = callrec.server.build(create_app(settings, services), "127.0.0.1", port, "warning")
    loop = asyncio.new_event_loop()

    async def main() -> None:
        try:
            await server.serve()
        finally:
            await services.storages.aclose()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: accepts(port), HANG)
        yield port
    finally:
        loop.call_soon_threadsafe(server.stop)
        thread.join(HANG)
        assert not thread.is_alive()
        loop.close()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def raw_get(port: int, path: str, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    """Send a GET and read the status line and headers; returns the socket and any body
    bytes already read."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(HANG)
    auth = ALICE["Authorization"]
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock, body


@pytest.fixture
def big_on_dav(dav: WebDAV) -> tuple[str, int]:
    name = f"{unique('big')}.mp3"
    # Larger than twice what the sockets between storage and client may buffer: a receive
    # buffer grows up to net.ipv4.tcp_rmem's maximum (32 MB on some kernels), a send buffer
    # up to tcp_wmem's (4 MB). With 48 MB, a busy machine once buffered 31 MB of it.
    size = 96 * 2**20
    (dav.root / "voice").mkdir(exist_ok=True)
    with (dav.root / "voice" / name).open("wb") as out:
        for i in range(size // 2**20):
            out.write(bytes([i % 256]) * 2**20)
    return name, size


def test_a_client_going_away_releases_the_storage_connection(
    make_app: Callable[..., App], dav_relay: TcpProxy, big_on_dav: tuple[str, int]
) -> None:
    app = make_app()
    name, size = big_on_dav
    rec_id = unique()
    with_media(app, {"storage": "webDAV", "path": f"/recordings/voice/{name}"}, rec_id)
    with live(app.settings, app.services) as port:
        sock, _ = raw_get(port, f"/api/v2/recordings/{rec_id}/play/call.mp3")
        with contextlib.closing(sock):
            sock.recv(65536)
            assert dav_relay.open_upstream >= 1  # streaming from the storage
        assert wait_until(lambda: dav_relay.open_upstream == 0, HANG)
        assert dav_relay.bytes_back < size // 2  # it stopped; it did not read on


def test_a_slow_client_slows_the_storage_down(
    make_app: Callable[..., App], dav_relay: TcpProxy, big_on_dav: tuple[str, int]
) -> None:
    app = make_app()
    name, size = big_on_dav
    rec_id = unique()
    with_media(app, {"storage": "webDAV", "path": f"/recordings/voice/{name}"}, rec_id)
    with live(app.settings, app.services) as port:
        sock, body = raw_get(port, f"/api/v2/recordings/{rec_id}/play/call.mp3", 64 * 1024)
        with contextlib.closing(sock):
            # The client reads nothing more: wait (bounded) until the storage stops sending.
            history: list[int] = []

            def settled() -> bool:
                history.append(dav_relay.bytes_back)
                return len(history) >= 25 and history[-1] > 0 and len(set(history[-25:])) == 1

            assert wait_until(settled, 15)
            assert dav_relay.bytes_back < size // 2  # buffers filled, then the storage waited
            received = len(body)
            while received < size:
                chunk = sock.recv(2**20)
                assert chunk, "the stream ended early"
                received += len(chunk)
            assert received == size


def test_delete_never_removes_another_recordings_upload(
    make_app: Callable[..., App], dav: WebDAV, s3: S3
) -> None:
    """A recording pointing into the upload storage outside its own folder (here: at another
    recording's upload) does not take that file along when it is deleted."""
    app = make_app(upload_storage="dav", delete_external_media=True)
    owner, other = unique(), unique()
    assert post(app, local_recording(owner)).json() == {"statusCode": 0}
    put = app.client.put(f"{OPS}/{owner}/media/call.mp3", content=DATA, headers=RECORDER)
    assert put.status_code == 200, put.text
    key = f"cc1/{owner}/call.mp3"
    doc = local_recording(
        other,
        mediaFiles=[{"mediaId": "call.mp3", "mediaDescriptor": {"storage": "dav", "path": key}}],
    )
    assert post(app, doc).json() == {"statusCode": 0}
    assert app.client.delete(f"{OPS}/{other}", headers=RECORDER).json() == {"statusCode": 0}
    assert (dav.root / key).read_bytes() == DATA
    assert play(app, owner).content == DATA


def test_a_file_replaced_between_its_stat_and_its_read_is_played_whole_as_it_now_is(
    make_app: Callable[..., App], dav: WebDAV, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    name, rec_id = f"{unique('swap')}.mp3", unique()
    (dav.root / "voice").mkdir(exist_ok=True)
    (dav.root / "voice" / name).write_bytes(b"old bytes")
    with_media(app, {"storage": "webDAV", "path": f"/recordings/voice/{name}"}, rec_id)
    store = app.services.storages.get("dav")
    real_stat = store.stat
    stats: list[str] = []

    async def stat_then_replace(key: str) -> Any:
        found = await real_stat(key)
        if not stats:  # replaced by a recorder right after the first stat
            (dav.root / "voice" / name).write_bytes(b"the new, longer bytes")
        stats.append(key)
        return found

    monkeypatch.setattr(store, "stat", stat_then_replace)
    response = play(app, rec_id)
    assert response.status_code == 200
    assert response.content == b"the new, longer bytes"
    assert response.headers["content-length"] == str(len(b"the new, longer bytes"))
    assert len(stats) == 2  # answered again from a fresh stat
