"""WebDAV and S3 stores when things go wrong, against real servers behind a byte-counting
TCP relay: storage down, hung, dying mid-stream, wrong credentials; and what they fetch
(ranged reads only, HEAD without a body, never a whole file for a range)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest
from pydantic import SecretStr

from callrec.errors import StorageUnavailable
from callrec.media import MediaStore, StorageTimeout
from callrec.media.config import S3Config, WebDAVConfig, build_store
from storage_servers import (
    PASSWORD,
    S3,
    USER,
    TcpProxy,
    WebDAV,
    closed_port,
    proxy,
    range_ignoring_server,
    s3_server,
    webdav_server,
)

T = TypeVar("T")
TIMEOUT = 0.5  # the storage timeout under test
HANG = 5.0  # "never a hang": the bound every failing call must stay well within
KINDS = ["webdav", "s3"]
BIG = 8 * 2**20


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAV]:
    with webdav_server(tmp_path_factory.mktemp("dav")) as server:
        (server.root / "big.wav").write_bytes(b"\x01" * BIG)
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        server.put(f"{server.prefix}/big.wav", b"\x01" * BIG)
        yield server


def make_store(kind: str, port: int, request: pytest.FixtureRequest, **secret: str) -> MediaStore:
    """A store of ``kind`` reaching its server through loopback port ``port``."""
    if kind == "webdav":
        dav: WebDAV = request.getfixturevalue("dav")
        url = dav.url.replace(f":{dav.port}/", f":{port}/")
        password = SecretStr(secret.get("password", PASSWORD))
        config = WebDAVConfig(type="webdav", url=url, username=USER, password=password)
        return build_store("dav", config, TIMEOUT)
    s3: S3 = request.getfixturevalue("s3")
    s3_config = S3Config(
        type="s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region=s3.region,
        bucket=s3.bucket,
        access_key_id=s3.access_key,
        secret_access_key=SecretStr(secret.get("password", s3.secret_key)),
    )
    return build_store("s3", s3_config, TIMEOUT)


def big_key(kind: str, request: pytest.FixtureRequest) -> str:
    return "big.wav" if kind == "webdav" else f"{request.getfixturevalue('s3').prefix}/big.wav"


def server_port(kind: str, request: pytest.FixtureRequest) -> int:
    if kind == "webdav":
        port: int = request.getfixturevalue("dav").port
        return port
    return int(request.getfixturevalue("s3").endpoint.rsplit(":", 1)[1])


@pytest.fixture
def relay(request: pytest.FixtureRequest, kind: str) -> Iterator[TcpProxy]:
    with proxy(server_port(kind, request)) as running:
        yield running


def run(store: MediaStore, action: Callable[[MediaStore], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await action(store)
        finally:
            await store.aclose()

    return anyio.run(main)


async def drain(body: Any) -> int:
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
    finally:
        await body.aclose()
    return total


def timed(action: Callable[[], Any]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        action()
    except BaseException as error:  # the failure under test
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------------------- what is fetched


def test_a_ranged_read_fetches_only_that_range(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    store = make_store(kind, relay.port, request)
    before = relay.bytes_back

    async def action(s: MediaStore) -> int:
        return await drain(await s.open_range(big_key(kind, request), 1000, 1000 + 65535))

    assert run(store, action) == 65536
    fetched = relay.bytes_back - before
    assert 65536 <= fetched < 65536 + 8192  # the range and some headers, not 8 MiB
    assert any(b"range: bytes=1000-66535" in r.lower() for r in relay.requests)


def test_stat_fetches_no_body(kind: str, relay: TcpProxy, request: pytest.FixtureRequest) -> None:
    store = make_store(kind, relay.port, request)
    stat = run(store, lambda s: s.stat(big_key(kind, request)))
    assert stat.size == BIG
    assert relay.bytes_back < 4096
    assert all(r.startswith(b"HEAD ") for r in relay.requests)


@pytest.mark.parametrize("kind", KINDS)
def test_a_storage_ignoring_range_is_502_and_not_read_whole(
    kind: str, request: pytest.FixtureRequest
) -> None:
    size = 32 * 2**20
    with range_ignoring_server(size) as port, proxy(port) as relay:
        store = make_store(kind, relay.port, request)
        error, elapsed = timed(lambda: run(store, lambda s: s.open_range("x.wav", 0, 99)))
        assert isinstance(error, StorageUnavailable)
        assert error.http_status == 502
        assert elapsed < HANG
        # Closed at once: at most what the socket buffers took, never the whole 32 MiB.
        assert relay.bytes_back < size // 2


# --------------------------------------------------------------------------- failures


def test_a_storage_that_is_down_is_502(kind: str, request: pytest.FixtureRequest) -> None:
    store = make_store(kind, closed_port(), request)
    error, elapsed = timed(lambda: run(store, lambda s: s.stat(big_key(kind, request))))
    assert isinstance(error, StorageUnavailable)
    assert not isinstance(error, StorageTimeout)
    assert (error.http_status, error.status_code) == (502, 4)
    assert elapsed < HANG


def test_a_hung_storage_is_504_within_the_timeout(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    relay.stall = True
    for action in (
        lambda s: s.stat(big_key(kind, request)),
        lambda s: s.open_range(big_key(kind, request), 0, 10),
    ):
        store = make_store(kind, relay.port, request)
        error, elapsed = timed(lambda: run(store, action))  # noqa: B023
        assert isinstance(error, StorageTimeout)
        assert (error.http_status, error.status_code) == (504, 4)
        assert TIMEOUT * 0.9 <= elapsed < HANG


def test_a_storage_hanging_mid_stream_times_out(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    relay.stall_after = 2 * 2**20

    async def action(s: MediaStore) -> int:
        return await drain(await s.open_range(big_key(kind, request), 0, BIG - 1))

    store = make_store(kind, relay.port, request)
    error, elapsed = timed(lambda: run(store, action))
    assert isinstance(error, StorageTimeout)
    assert elapsed < HANG


def test_a_storage_dying_mid_stream_fails_the_stream(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    relay.cut_after = 2 * 2**20

    async def action(s: MediaStore) -> int:
        return await drain(await s.open_range(big_key(kind, request), 0, BIG - 1))

    store = make_store(kind, relay.port, request)
    error, elapsed = timed(lambda: run(store, action))
    assert isinstance(error, StorageUnavailable)
    assert not isinstance(error, StorageTimeout)
    assert elapsed < HANG


def test_wrong_credentials_are_502_and_never_shown(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-Secret-4711"
    store = make_store(kind, server_port(kind, request), request, password=wrong)
    error, _ = timed(lambda: run(store, lambda s: s.stat(big_key(kind, request))))
    assert isinstance(error, StorageUnavailable)
    assert (error.http_status, error.status_code) == (502, 4)
    assert "HTTP 40" in caplog.text  # the operator learns why: 401 or 403
    for text in (str(error), repr(error), str(error.body()), caplog.text, repr(store.__dict__)):
        assert wrong not in text
        assert PASSWORD not in text


def test_an_upload_cut_short_leaves_the_last_complete_file(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    """A WebDAV server may write a PUT in place (wsgidav does): an upload is sent under a
    name of its own and moved over the file once complete, so a connection that dies
    mid-upload leaves the file as the last upload left it, and no half file beside it."""
    key = ("" if kind == "webdav" else f"{request.getfixturevalue('s3').prefix}/") + "cc1/r/cut.wav"
    first, second = b"1" * 300_000, b"2" * 600_000

    async def put(store: MediaStore, data: bytes) -> int:
        async def chunks() -> AsyncIterator[bytes]:
            yield data

        return await store.put(key, chunks(), len(data))

    assert run(make_store(kind, relay.port, request), lambda s: put(s, first)) == len(first)
    relay.cut_up_after = 200_000
    error, _ = timed(lambda: run(make_store(kind, relay.port, request), lambda s: put(s, second)))
    assert isinstance(error, StorageUnavailable), error
    relay.cut_up_after = None

    async def read_back(store: MediaStore) -> tuple[bytes, list[str]]:
        body = await store.open_range(key, 0, len(first) - 1)
        try:
            data = b"".join([chunk async for chunk in body])
        finally:
            await body.aclose()
        return data, [k async for k, _ in store.list_files(key.rsplit("/", 1)[0] + "/")]

    data, listed = run(make_store(kind, relay.port, request), read_back)
    assert data == first
    assert listed == [key]


def test_uploads_to_a_hung_storage_time_out(
    kind: str, relay: TcpProxy, request: pytest.FixtureRequest
) -> None:
    relay.stall = True

    async def chunks() -> AsyncIterator[bytes]:
        yield b"bytes"

    store = make_store(kind, relay.port, request)
    error, elapsed = timed(lambda: run(store, lambda s: s.put("cc1/r/x.wav", chunks(), 100)))
    assert isinstance(error, StorageTimeout)
    assert elapsed < HANG
