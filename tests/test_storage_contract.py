"""One ``MediaStore`` contract, run against every backend: the local directory, a real WebDAV
server (wsgidav) and S3 (moto's server mode, or MinIO/Ceph via CALLREC_TEST_S3_URL).

Every test also checks the storage's own view (the WebDAV server's directory, the bucket via
boto3), so that callrec interoperates with files recorders put there themselves.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from pydantic import SecretStr

from callrec.errors import InvalidParameter
from callrec.media import MediaChanged, MediaMissing, MediaStore, UploadTooLarge
from callrec.media.config import S3Config, WebDAVConfig, build_store
from callrec.media.local import LocalMediaStore
from storage_servers import PASSWORD, S3, USER, WebDAV, s3_server, webdav_server

T = TypeVar("T")
TIMEOUT = 5.0
BACKENDS = ["local", "webdav", "s3"]
SIZE = 300_001  # a little over one read chunk and a bit: ranges cross chunk boundaries
DATA = random.Random(5).randbytes(SIZE)


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAV]:
    with webdav_server(tmp_path_factory.mktemp("dav")) as server:
        yield server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


class Backend:
    """A store factory and the storage's own view of the files, for one test."""

    def __init__(self, kind: str, make: Callable[[], MediaStore], prefix: str) -> None:
        self.kind = kind
        self.make = make
        self.prefix = prefix  # each test writes under its own prefix
        self.read_back: Callable[[str], bytes] = lambda key: b""
        self.place: Callable[[str, bytes], None] = lambda key, data: None
        self.exists: Callable[[str], bool] = lambda key: False

    def key(self, rest: str) -> str:
        return self.prefix + rest

    def run(self, action: Callable[[MediaStore], Awaitable[T]]) -> T:
        async def main() -> T:
            store = self.make()
            try:
                return await action(store)
            finally:
                await store.aclose()

        return anyio.run(main)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    prefix = f"t{uuid.uuid4().hex[:10]}/"
    if request.param == "local":
        root = tmp_path / "media"
        made = Backend("local", lambda: LocalMediaStore(root), prefix)
        made.read_back = lambda key: (root / key).read_bytes()

        def place_local(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        made.place = place_local
        made.exists = lambda key: (root / key).exists()
        return made
    if request.param == "webdav":
        dav: WebDAV = request.getfixturevalue("dav")
        config = WebDAVConfig(
            type="webdav", url=dav.url, username=USER, password=SecretStr(PASSWORD)
        )
        made = Backend("webdav", lambda: build_store("dav", config, TIMEOUT), prefix)
        made.read_back = lambda key: (dav.root / key).read_bytes()

        def place_dav(key: str, data: bytes) -> None:
            (dav.root / key).parent.mkdir(parents=True, exist_ok=True)
            (dav.root / key).write_bytes(data)

        made.place = place_dav
        made.exists = lambda key: (dav.root / key).exists()
        return made
    s3: S3 = request.getfixturevalue("s3")
    s3_config = S3Config(
        type="s3",
        endpoint_url=s3.endpoint,
        region=s3.region,
        bucket=s3.bucket,
        access_key_id=s3.access_key,
        secret_access_key=SecretStr(s3.secret_key),
    )
    made = Backend("s3", lambda: build_store("s3", s3_config, TIMEOUT), s3.prefix + "/" + prefix)
    made.read_back = s3.get
    made.place = s3.put
    made.exists = s3.exists
    return made


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


async def read(store: MediaStore, key: str, start: int, end: int) -> bytes:
    body = await store.open_range(key, start, end)
    try:
        return b"".join([chunk async for chunk in body])
    finally:
        await body.aclose()


def test_put_stores_the_bytes_and_stat_reports_them(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/call.mp3")

    async def action(store: MediaStore) -> Any:
        size = await store.put(key, chunks(DATA[:1000], DATA[1000:]), SIZE)
        return size, await store.stat(key), await read(store, key, 0, SIZE - 1)

    size, stat, back = backend.run(action)
    assert size == stat.size == SIZE
    assert stat.etag.startswith('"')
    assert stat.etag.endswith('"')
    assert len(stat.etag) > 2
    assert back == DATA
    assert backend.read_back(key) == DATA  # the storage's own view


RANGES = [
    (0, 0),
    (0, 9),
    (SIZE - 1, SIZE - 1),
    (SIZE - 100, SIZE - 1),
    (12_345, 12_345 + 65_535),
    (65_535, 262_145),
    (1, SIZE - 2),
    (0, SIZE - 1),
]


def test_ranges_read_exactly_the_bytes_asked_for(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/ranges.wav")
    backend.place(key, DATA)

    async def action(store: MediaStore) -> list[bytes]:
        return [await read(store, key, start, end) for start, end in RANGES]

    got = backend.run(action)
    for (start, end), data in zip(RANGES, got, strict=True):
        assert data == DATA[start : end + 1], (start, end)


def test_files_placed_by_others_are_read(backend: Backend) -> None:
    key = backend.key("voice/4f82ee48-4fe4-40e1-961d-309ba6e38698.mp3")
    backend.place(key, b"recorded elsewhere")

    async def action(store: MediaStore) -> Any:
        return (await store.stat(key)).size, await read(store, key, 9, 17)

    assert backend.run(action) == (18, b"elsewhere")


def test_replacing_a_file_changes_its_stat(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/a.wav")

    async def action(store: MediaStore) -> Any:
        await store.put(key, chunks(b"first version"), 100)
        first = await store.stat(key)
        await store.put(key, chunks(b"second, longer version"), 100)
        return first, await store.stat(key), await read(store, key, 0, 21)

    first, second, data = backend.run(action)
    assert (first.size, second.size) == (13, 22)
    assert first.etag != second.etag
    assert data == b"second, longer version"


def test_missing_files_are_media_missing(backend: Backend) -> None:
    backend.place(backend.key("cc1/other.wav"), b"x")

    async def action(store: MediaStore) -> list[tuple[int, int]]:
        outcomes = []
        for attempt in (
            lambda: store.stat(backend.key("cc1/none.wav")),
            lambda: store.open_range(backend.key("cc1/none.wav"), 0, 10),
            lambda: store.stat(backend.key("nowhere/at/all.wav")),
        ):
            with pytest.raises(MediaMissing) as caught:
                await attempt()
            outcomes.append((caught.value.http_status, caught.value.status_code))
        return outcomes

    assert backend.run(action) == [(404, 6)] * 3


def test_delete_removes_and_tolerates_missing_files(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/gone.wav")
    backend.place(key, b"bytes")

    async def action(store: MediaStore) -> bool:
        await store.delete(key)
        await store.delete(key)  # again: not an error
        try:
            await store.stat(key)
        except MediaMissing:
            return True
        return False

    assert backend.run(action) is True
    assert not backend.exists(key)


def test_an_upload_over_the_limit_stores_nothing(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/big.wav")

    async def action(store: MediaStore) -> bool:
        with pytest.raises(UploadTooLarge) as caught:
            await store.put(key, chunks(b"a" * 600, b"b" * 600), 1000)
        assert caught.value.http_status == 413
        try:
            await store.stat(key)
        except MediaMissing:
            return True
        return False

    assert backend.run(action) is True


def test_names_needing_escapes_round_trip(backend: Backend) -> None:
    key = backend.key("cc1/rec 1/Grüße vom Band #1 100%+x&y=z;(1).wav")

    async def action(store: MediaStore) -> Any:
        await store.put(key, chunks(b"escaped"), 100)
        listed = [k async for k, _ in store.list_files(backend.prefix)]
        return (await store.stat(key)).size, await read(store, key, 0, 6), listed

    size, data, listed = backend.run(action)
    assert (size, data) == (7, b"escaped")
    assert listed == [key]
    assert backend.read_back(key) == b"escaped"


def test_list_files_gives_every_key_and_size_under_a_prefix(backend: Backend) -> None:
    files = {
        backend.key("cc1/r1/a.wav"): b"1",
        backend.key("cc1/r1/b.wav"): b"22",
        backend.key("cc1/r2/deep/c.mp3"): b"333",
        backend.key("cc2/r3/d.wav"): b"4444",
    }
    for key, data in files.items():
        backend.place(key, data)

    async def action(store: MediaStore) -> Any:
        every = sorted([item async for item in store.list_files(backend.prefix)])
        cc1 = sorted([item async for item in store.list_files(backend.key("cc1/"))])
        none = [item async for item in store.list_files(backend.key("nothing/"))]
        return every, cc1, none

    every, cc1, none = backend.run(action)
    assert every == sorted((k, len(v)) for k, v in files.items())
    assert cc1 == sorted((k, len(v)) for k, v in files.items() if "/cc1/" in "/" + k)
    assert none == []


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "a//b", "/abs", "a/\x00b", "a\\b", "a/"])
def test_keys_that_could_escape_are_refused(backend: Backend, bad: str) -> None:
    async def action(store: MediaStore) -> int:
        refused = 0
        for attempt in (
            lambda: store.stat(bad),
            lambda: store.open_range(bad, 0, 1),
            lambda: store.put(bad, chunks(b"x"), 10),
            lambda: store.delete(bad),
        ):
            try:
                await attempt()
            except InvalidParameter:
                refused += 1
        return refused

    assert backend.run(action) == 4


def test_a_body_closed_early_leaves_the_store_usable(backend: Backend) -> None:
    key = backend.key("cc1/rec-1/long.wav")
    big = DATA * 8
    backend.place(key, big)

    async def action(store: MediaStore) -> Any:
        body = await store.open_range(key, 0, len(big) - 1)
        first = b""
        async for chunk in body:
            first = chunk
            break
        await body.aclose()  # the client went away after one chunk
        return first, await read(store, key, 100, 199), (await store.stat(key)).size

    first, again, size = backend.run(action)
    assert first
    assert big.startswith(first)
    assert again == big[100:200]
    assert size == len(big)


def test_a_file_replaced_after_its_stat_is_not_read_as_that_stat(backend: Backend) -> None:
    """A play's headers come from ``stat``; a file replaced before its bytes are opened is
    ``MediaChanged`` (the play then answers again from a fresh stat), never the new bytes
    under the old headers."""
    key = backend.key("cc1/r/replaced.wav")

    async def action(store: MediaStore) -> tuple[bool, bytes]:
        await store.put(key, chunks(b"first version"), 100)
        before = await store.stat(key)
        await store.put(key, chunks(b"second, longer version"), 100)
        try:
            await store.open_range(key, 0, 4, before)
        except MediaChanged:
            changed = True
        else:
            changed = False
        after = await store.stat(key)
        body = await store.open_range(key, 0, after.size - 1, after)
        try:
            return changed, b"".join([chunk async for chunk in body])
        finally:
            await body.aclose()

    assert backend.run(action) == (True, b"second, longer version")
