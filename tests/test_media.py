"""Unit tests for callrec.media: HTTP semantics of playing (http.py) and the local store."""

from __future__ import annotations

import os
import random
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import pytest

from callrec.errors import InvalidParameter
from callrec.media import MediaMissing, key_parts
from callrec.media.http import (
    RangeNotSatisfiable,
    content_disposition,
    content_type,
    etag_matches,
    if_range_allows,
    parse_range,
)
from callrec.media.local import ABANDONED_AFTER_S, CHUNK, LocalMediaStore, UploadTooLarge, etag

# --------------------------------------------------------------------------- parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-499", (0, 499)),
        ("bytes=0-0", (0, 0)),
        ("bytes=500-999", (500, 999)),
        ("bytes=999-999", (999, 999)),
        ("bytes=500-", (500, 999)),
        ("bytes=0-", (0, 999)),
        ("bytes=999-", (999, 999)),
        ("bytes=-200", (800, 999)),
        ("bytes=-1", (999, 999)),
        ("bytes=-1000", (0, 999)),
        ("bytes=-5000", (0, 999)),  # suffix longer than the file: the whole file
        ("bytes=0-5000", (0, 999)),  # end past the file is clipped
        ("bytes=998-99999999999999999999", (998, 999)),
        (" bytes=10-20 ", (10, 20)),
        ("bytes=010-020", (10, 20)),
    ],
)
def test_parse_range_satisfiable(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=1-a",
        "bytes=1.5-2",
        "bytes=5-1",  # last < first: invalid, so ignored
        "bytes=+1-2",
        "bytes=--1",
        "bytes 0-5",
        "bytes:0-5",
        "items=0-5",
        "0-5",
        "bytes=0-1,5-6",  # multi-range: the whole file (decisions.md)
        "bytes=0-1, 5-6",
        "bytes=-5,0-1",
        "bytes=0-5,",
        "bytes=0-5;x",
    ],
)
def test_parse_range_ignores_malformed_and_multi_range_headers(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", SIZE),
        ("bytes=1000-1000", SIZE),
        ("bytes=1000-2000", SIZE),
        ("bytes=5000-", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
    ],
)
def test_parse_range_unsatisfiable_is_416(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.http_status == 416
    assert caught.value.status_code == 2


# --------------------------------------------------------------------------- content_type


@pytest.mark.parametrize(
    ("media", "expected"),
    [
        ({"type": "audio/mp3"}, "audio/mpeg"),
        ({"type": "audio/mpeg"}, "audio/mpeg"),
        ({"type": "audio/mpeg3"}, "audio/mpeg"),
        ({"type": "audio/x-mp3"}, "audio/mpeg"),
        ({"type": "Audio/MP3"}, "audio/mpeg"),
        ({"type": " audio/mp3 "}, "audio/mpeg"),
        ({"type": "audio/wav"}, "audio/wav"),
        ({"type": "audio/x-wav"}, "audio/wav"),
        ({"type": "audio/wave"}, "audio/wav"),
        ({"type": "audio/ogg"}, "audio/ogg"),
        ({"type": "video/mp4"}, "video/mp4"),
        ({"type": "audio/flac", "mediaId": "a.mp3"}, "audio/flac"),  # well-formed: as sent
        ({"type": "audio/mp3", "mediaId": "a.wav"}, "audio/mpeg"),  # declared beats extension
        ({"mediaId": "a.mp3"}, "audio/mpeg"),
        ({"mediaId": "a.MP3"}, "audio/mpeg"),
        ({"mediaId": "a.wav"}, "audio/wav"),
        ({"mediaId": "a.ogg"}, "audio/ogg"),
        ({"mediaId": "a.mp4"}, "video/mp4"),
        ({"type": "", "mediaId": "a.wav"}, "audio/wav"),
        ({"type": "not a mime type", "mediaId": "a.wav"}, "audio/wav"),
        ({"type": "audio/mp3\r\nX-Injected: 1", "mediaId": "a.ogg"}, "audio/ogg"),
        ({"type": "audio/", "mediaId": "a.mp3"}, "audio/mpeg"),
        ({"mediaId": "a"}, "application/octet-stream"),
        ({}, "application/octet-stream"),
        (
            {"type": "audio/mp3", "mediaId": "a.mp3", "pkcs7": "MIAGCSqGSIb3"},
            "application/octet-stream",
        ),
        ({"mediaId": "a.wav", "pkcs7": "MIAGCSqGSIb3"}, "application/octet-stream"),
    ],
)
def test_content_type(media: dict[str, Any], expected: str) -> None:
    assert content_type(media) == expected


# --------------------------------------------------------------------------- content_disposition


def filename_star(header: str) -> str:
    prefix = "filename*=UTF-8''"
    [encoded] = [
        p.strip()[len(prefix) :] for p in header.split(";") if p.strip().startswith(prefix)
    ]
    return unquote(encoded, encoding="utf-8", errors="strict")


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ("call.mp3", "call.mp3"),
        ("with space.wav", "with space.wav"),
        ('say "hi".mp3', "say _hi_.mp3"),
        ("back\\slash.mp3", "back_slash.mp3"),
        ("Grüße.mp3", "Gr__e.mp3"),
        ("通话.wav", "__.wav"),
        ("a;b=c.mp3", "a;b=c.mp3"),
        ("emoji-😀.ogg", "emoji-_.ogg"),
    ],
)
def test_content_disposition(name: str, fallback: str) -> None:
    header = content_disposition(name)
    assert header.startswith("inline; ")
    assert header.isascii()
    assert f'filename="{fallback}"' in header
    assert filename_star(header) == name
    # Only the quoted fallback may hold spaces or separators; the extended value never does.
    star = header.split("filename*=", 1)[1]
    assert not any(c in star for c in ' ";\\')


# --------------------------------------------------------------------------- validators

ETAG = '"18c3f1a2b-2a"'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        (ETAG, True),
        (f" {ETAG} ", True),
        ("*", True),
        (f'"other", {ETAG}', True),
        (f'"other",{ETAG}', True),
        (f"W/{ETAG}", True),  # If-None-Match compares weakly
        ('"other"', False),
        ('"other", W/"also-other"', False),
        (ETAG.strip('"'), False),
        (ETAG[:-2] + '"', False),
    ],
)
def test_etag_matches(header: str | None, expected: bool) -> None:
    assert etag_matches(header, ETAG) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, True),
        (ETAG, True),
        (f" {ETAG} ", True),
        ('"other"', False),
        (f"W/{ETAG}", False),  # If-Range needs a strong match
        ("Wed, 21 Oct 2015 07:28:00 GMT", False),  # no Last-Modified is sent: not validated
        ("*", False),
    ],
)
def test_if_range_allows(header: str | None, expected: bool) -> None:
    assert if_range_allows(header, ETAG) is expected


# --------------------------------------------------------------------------- key_parts


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("a", ["a"]),
        ("cc1/rec-1/call.mp3", ["cc1", "rec-1", "call.mp3"]),
        ("cc1/rec-1/Grüße vom Band.wav", ["cc1", "rec-1", "Grüße vom Band.wav"]),
        ("a..b/...", ["a..b", "..."]),
        ("x/.hidden", ["x", ".hidden"]),
    ],
)
def test_key_parts_accepts_relative_keys(key: str, parts: list[str]) -> None:
    assert key_parts(key) == parts


@pytest.mark.parametrize(
    "key",
    [
        "",
        ".",
        "..",
        "../x",
        "a/../../x",
        "a/..",
        "a/./b",
        "/etc/passwd",
        "a//b",
        "a/",
        "a\\..\\b",
        "..\\x",
        ".incoming/tmp",
        "a/.incoming",
        "a/\x00b",
        "a/\nb",
        "a/\x7fb",
        "a/\x1fb",
    ],
)
def test_key_parts_refuses_keys_that_could_leave_the_root(key: str) -> None:
    with pytest.raises(InvalidParameter):
        key_parts(key)


# --------------------------------------------------------------------------- LocalMediaStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "media"


@pytest.fixture
def store(root: Path) -> LocalMediaStore:
    return LocalMediaStore(root)


async def stream(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def put(store: LocalMediaStore, key: str, chunks: AsyncIterator[bytes], limit: int) -> int:
    return anyio.run(store.put, key, chunks, limit)


def read_range(store: LocalMediaStore, key: str, start: int, end: int) -> list[bytes]:
    async def collect() -> list[bytes]:
        body = await store.open_range(key, start, end)
        try:
            return [chunk async for chunk in body]
        finally:
            await body.aclose()

    return anyio.run(collect)


def incoming(root: Path) -> list[Path]:
    tmp = root / ".incoming"
    return list(tmp.iterdir()) if tmp.exists() else []


def test_put_stores_the_streamed_bytes(store: LocalMediaStore, root: Path) -> None:
    pieces = [os.urandom(n) for n in (1, 1000, CHUNK, 3, 0, CHUNK + 7)]
    size = put(store, "cc1/rec-1/call.mp3", stream(pieces), 10 * CHUNK)
    assert size == sum(map(len, pieces))
    assert (root / "cc1" / "rec-1" / "call.mp3").read_bytes() == b"".join(pieces)
    assert incoming(root) == []


def test_what_killed_uploads_left_is_removed_when_the_store_opens(root: Path) -> None:
    incoming = root / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "abandoned").write_bytes(b"half an upload")
    (incoming / "in-progress").write_bytes(b"being written")
    old = time.time() - ABANDONED_AFTER_S - 60
    os.utime(incoming / "abandoned", (old, old))
    LocalMediaStore(root)
    assert sorted(p.name for p in incoming.iterdir()) == ["in-progress"]
    LocalMediaStore(root / "elsewhere")  # no directory yet: nothing to do


def test_put_accepts_exactly_the_limit(store: LocalMediaStore, root: Path) -> None:
    assert put(store, "a/b", stream([b"x" * 10, b"y" * 10]), 20) == 20
    assert (root / "a" / "b").read_bytes() == b"x" * 10 + b"y" * 10


def test_put_of_an_empty_file(store: LocalMediaStore, root: Path) -> None:
    assert put(store, "a/empty.wav", stream([]), 10) == 0
    assert (root / "a" / "empty.wav").read_bytes() == b""


def test_put_file_appears_only_once_complete(store: LocalMediaStore, root: Path) -> None:
    target = root / "cc1" / "rec-1" / "call.mp3"
    seen_during_upload: list[tuple[bool, int]] = []

    async def watched() -> AsyncIterator[bytes]:
        for _ in range(4):
            seen_during_upload.append((target.exists(), len(incoming(root))))
            yield b"z" * 1000

    put(store, "cc1/rec-1/call.mp3", watched(), 10_000)
    assert seen_during_upload[0] == (False, 1)
    assert all(not exists for exists, _ in seen_during_upload)
    assert all(temps == 1 for _, temps in seen_during_upload)
    assert target.read_bytes() == b"z" * 4000
    assert incoming(root) == []


def test_put_failing_midway_leaves_nothing(store: LocalMediaStore, root: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        put(store, "cc1/rec-1/call.mp3", broken(), 10_000)
    assert not (root / "cc1" / "rec-1" / "call.mp3").exists()
    assert incoming(root) == []


def test_put_over_the_limit_is_413_and_leaves_nothing(store: LocalMediaStore, root: Path) -> None:
    with pytest.raises(UploadTooLarge) as caught:
        put(store, "cc1/rec-1/call.mp3", stream([b"a" * 600, b"b" * 600]), 1000)
    assert caught.value.http_status == 413
    assert caught.value.status_code == 2
    assert not (root / "cc1" / "rec-1" / "call.mp3").exists()
    assert incoming(root) == []


def test_a_failed_replacement_keeps_the_previous_file(store: LocalMediaStore, root: Path) -> None:
    put(store, "cc1/r/a.wav", stream([b"old bytes"]), 100)
    with pytest.raises(UploadTooLarge):
        put(store, "cc1/r/a.wav", stream([b"n" * 60, b"n" * 60]), 100)
    assert (root / "cc1" / "r" / "a.wav").read_bytes() == b"old bytes"
    put(store, "cc1/r/a.wav", stream([b"new"]), 100)
    assert (root / "cc1" / "r" / "a.wav").read_bytes() == b"new"
    assert incoming(root) == []


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "/abs", ".incoming/x"])
def test_put_refuses_keys_leaving_the_root(
    store: LocalMediaStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(InvalidParameter):
        put(store, key, stream([b"x"]), 100)
    assert not (tmp_path / "outside").exists()
    assert incoming(tmp_path / "media") == []


BIG = 3 * CHUNK + 123


@pytest.fixture(scope="module")
def big_bytes() -> bytes:
    return random.Random(7).randbytes(BIG)


@pytest.fixture
def big(store: LocalMediaStore, big_bytes: bytes) -> str:
    put(store, "cc1/rec-1/big.wav", stream([big_bytes]), BIG)
    return "cc1/rec-1/big.wav"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 0),
        (0, BIG - 1),
        (0, CHUNK - 1),
        (0, CHUNK),
        (1, CHUNK),
        (CHUNK - 1, CHUNK - 1),
        (CHUNK - 1, CHUNK),
        (CHUNK, CHUNK),
        (CHUNK, 2 * CHUNK - 1),
        (CHUNK - 1, 2 * CHUNK),
        (CHUNK + 1, 3 * CHUNK + 1),
        (2 * CHUNK - 1, 3 * CHUNK + 122),
        (BIG - 1, BIG - 1),
        (BIG - 124, BIG - 1),
        (12345, 654321),
    ],
)
def test_open_range_streams_exact_bytes_in_bounded_chunks(
    store: LocalMediaStore, big: str, big_bytes: bytes, start: int, end: int
) -> None:
    chunks = read_range(store, big, start, end)
    assert b"".join(chunks) == big_bytes[start : end + 1]
    assert all(0 < len(c) <= CHUNK for c in chunks)


def test_open_range_past_the_end_stops_at_the_end(
    store: LocalMediaStore, big: str, big_bytes: bytes
) -> None:
    assert b"".join(read_range(store, big, BIG - 10, BIG + 10_000)) == big_bytes[-10:]


def test_stat_gives_size_and_a_changing_etag(store: LocalMediaStore, big: str) -> None:
    first = anyio.run(store.stat, big)
    assert first.size == BIG
    assert first.etag.startswith('"')
    assert first.etag.endswith('"')
    assert anyio.run(store.stat, big) == first
    put(store, big, stream([b"shorter"]), BIG)
    second = anyio.run(store.stat, big)
    assert second.size == 7
    assert second.etag != first.etag


@pytest.mark.parametrize("key", ["cc1/rec-1/none.wav", "nowhere/at/all", "a"])
def test_stat_of_a_missing_file_is_media_missing(store: LocalMediaStore, key: str) -> None:
    with pytest.raises(MediaMissing) as caught:
        anyio.run(store.stat, key)
    assert caught.value.status_code == 6
    assert caught.value.http_status == 404


def test_stat_below_a_file_is_media_missing(store: LocalMediaStore, big: str) -> None:
    with pytest.raises(MediaMissing):
        anyio.run(store.stat, big + "/below")


def test_open_range_of_a_missing_file_is_media_missing(store: LocalMediaStore) -> None:
    with pytest.raises(MediaMissing):
        read_range(store, "cc1/rec-1/none.wav", 0, 10)


def test_delete_removes_and_tolerates_missing_files(
    store: LocalMediaStore, big: str, root: Path
) -> None:
    anyio.run(store.delete, big)
    assert not (root / big).exists()
    anyio.run(store.delete, big)
    with pytest.raises(MediaMissing):
        anyio.run(store.stat, big)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.wav").write_bytes(b"not yours")
    return secret


def test_a_file_symlink_leading_out_of_the_root_is_refused(
    store: LocalMediaStore, root: Path, outside: Path
) -> None:
    (root / "cc1").mkdir(parents=True)
    (root / "cc1" / "link.wav").symlink_to(outside / "secret.wav")
    for action in (
        lambda: anyio.run(store.stat, "cc1/link.wav"),
        lambda: read_range(store, "cc1/link.wav", 0, 3),
        lambda: anyio.run(store.delete, "cc1/link.wav"),
        lambda: put(store, "cc1/link.wav", stream([b"overwrite"]), 100),
    ):
        with pytest.raises(InvalidParameter):
            action()
    assert (outside / "secret.wav").read_bytes() == b"not yours"


def test_a_directory_symlink_leading_out_of_the_root_is_refused(
    store: LocalMediaStore, root: Path, outside: Path
) -> None:
    root.mkdir(parents=True)
    (root / "cc1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidParameter):
        anyio.run(store.stat, "cc1/secret.wav")
    with pytest.raises(InvalidParameter):
        read_range(store, "cc1/secret.wav", 0, 3)
    # Writing a new file through the link would leave the root as well.
    with pytest.raises(InvalidParameter):
        put(store, "cc1/new.wav", stream([b"planted"]), 100)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.wav"]
    assert incoming(root) == []


def test_a_symlink_inside_the_root_is_followed(store: LocalMediaStore, root: Path) -> None:
    put(store, "cc1/r/real.wav", stream([b"inside"]), 100)
    (root / "cc1" / "r" / "alias.wav").symlink_to(root / "cc1" / "r" / "real.wav")
    assert b"".join(read_range(store, "cc1/r/alias.wav", 0, 5)) == b"inside"


def test_special_files_are_not_media(store: LocalMediaStore, root: Path) -> None:
    (root / "cc1" / "dir.wav").mkdir(parents=True)
    os.mkfifo(root / "cc1" / "fifo.wav")  # opening it must not wait for a writer
    for key in ("cc1/dir.wav", "cc1/fifo.wav", "cc1"):
        with pytest.raises(MediaMissing):
            anyio.run(store.stat, key)
        with pytest.raises(MediaMissing):
            read_range(store, key, 0, 1)


def test_list_files_skips_uploads_in_progress(store: LocalMediaStore, root: Path) -> None:
    put(store, "cc1/r/a.wav", stream([b"aa"]), 10)
    put(store, "cc2/r/b.wav", stream([b"b"]), 10)
    (root / ".incoming").mkdir(exist_ok=True)
    (root / ".incoming" / "partial").write_bytes(b"half")

    async def listed(prefix: str) -> list[tuple[str, int]]:
        return [item async for item in store.list_files(prefix)]

    assert anyio.run(listed, "") == [("cc1/r/a.wav", 2), ("cc2/r/b.wav", 1)]
    assert anyio.run(listed, "cc2/") == [("cc2/r/b.wav", 1)]
    assert anyio.run(listed, "cc3/") == []


# --------------------------------------------------------------------------- hot-path reads

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 253:1 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /mnt/nfs rw,relatime - nfs4 server:/export rw
41 27 0:51 / /mnt/my\\040disk rw,relatime - xfs /dev/vdb rw
42 40 0:52 / /mnt/nfs/scratch rw,relatime - tmpfs tmpfs rw
garbage line
"""


@pytest.mark.parametrize(
    ("path", "on_disk"),
    [
        ("/var/lib/callrec/media", True),
        ("/", True),
        ("/mnt/nfs", False),
        ("/mnt/nfs/recordings", False),
        ("/mnt/nfsother/recordings", True),  # another directory, on the root file system
        ("/mnt/my disk/media", True),
        ("/mnt/nfs/scratch/media", True),  # the longest mount point wins
        ("/proc/x", False),
    ],
)
def test_disk_file_systems_are_told_from_network_ones(path: str, on_disk: bool) -> None:
    from callrec.media.local import on_disk_file_system

    assert on_disk_file_system(Path(path), MOUNTINFO) is on_disk
    assert on_disk_file_system(Path(path), "") is False  # unknown: the careful way


def test_threaded_mode_reads_the_same(root: Path, big_bytes: bytes) -> None:
    threaded = LocalMediaStore(root, on_loop=False)
    assert threaded.on_loop is False
    put(threaded, "cc1/r/t.wav", stream([big_bytes]), BIG)
    assert anyio.run(threaded.stat, "cc1/r/t.wav").size == BIG
    assert b"".join(read_range(threaded, "cc1/r/t.wav", 5, BIG - 5)) == big_bytes[5 : BIG - 4]
    with pytest.raises(MediaMissing):
        anyio.run(threaded.stat, "cc1/r/none.wav")


def test_a_hung_file_system_is_a_timeout_not_a_hang() -> None:
    import threading
    import time

    from callrec.media import StorageTimeout
    from callrec.media.local import blocking

    release = threading.Event()
    started = time.monotonic()
    try:
        with pytest.raises(StorageTimeout) as caught:
            anyio.run(lambda: blocking(release.wait, timeout=0.2, storage="nfs"))
    finally:
        release.set()
    assert caught.value.http_status == 504
    assert time.monotonic() - started < 5


def test_a_file_opened_after_the_request_gave_up_is_closed(
    store: LocalMediaStore, big: str
) -> None:
    from callrec.media.local import _Opening

    opening = _Opening(store, big)
    fd, _, _ = opening.run()  # the thread finished just as the request timed out
    opening.abandon()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    late = _Opening(store, big)
    late.abandon()  # the request gave up first: the thread closes what it opens
    with pytest.raises(MediaMissing):
        late.run()


def test_uncached_data_is_read_in_a_thread(
    store: LocalMediaStore, big: str, big_bytes: bytes
) -> None:
    from callrec.media.local import read_cached

    fd = os.open(store.path(big), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # drop it from the page cache
        if read_cached(fd, 4096, 100_000) is not None:
            pytest.skip("this file system keeps the file cached (or has no RWF_NOWAIT)")
    finally:
        os.close(fd)
    assert b"".join(read_range(store, big, 100_000, 400_000)) == big_bytes[100_000:400_001]


def test_cached_data_is_read_without_a_thread(
    store: LocalMediaStore, big: str, big_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callrec.media import local

    read_range(store, big, 0, BIG - 1)  # now in the page cache
    fd = os.open(store.path(big), os.O_RDONLY)
    try:
        if local.read_cached(fd, 1, 0) is None:
            pytest.skip("no RWF_NOWAIT here")
    finally:
        os.close(fd)
    calls: list[Any] = []
    original = local.blocking

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await original(*args, **kwargs)

    monkeypatch.setattr(local, "blocking", counting)
    assert b"".join(read_range(store, big, 7, BIG - 1)) == big_bytes[7:]
    assert calls == []


# --------------------------------------------------------------------------- kept descriptors


def place(root: Path, key: str, data: bytes) -> Path:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_now(store: LocalMediaStore, key: str) -> tuple[bytes, os.stat_result]:
    """The whole file through the descriptor ``use_file`` lends, and the stat it gave."""
    return store.use_file(key, lambda fd, st, path: (os.pread(fd, st.st_size + 100, 0), st))


def kept(store: LocalMediaStore) -> dict[str, os.stat_result]:
    """The store's kept descriptors, by key: what each one is open on."""
    return {key: os.fstat(k.fd) for key, k in store._open_files._files.items()}


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_file_played_again_is_not_opened_again(
    store: LocalMediaStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    place(root, "cc1/a.wav", b"first")
    opened: list[str] = []
    original = store.open_file

    def counting(key: str) -> tuple[int, os.stat_result, str]:
        opened.append(key)
        return original(key)

    monkeypatch.setattr(store, "open_file", counting)
    for _ in range(3):
        assert read_now(store, "cc1/a.wav")[0] == b"first"
    assert anyio.run(store.stat, "cc1/a.wav").size == 5
    assert b"".join(read_range(store, "cc1/a.wav", 1, 3)) == b"irs"
    assert opened == ["cc1/a.wav"]


def test_a_replaced_file_is_read_anew_and_the_old_descriptor_closed(
    store: LocalMediaStore, root: Path
) -> None:
    path = place(root, "cc1/a.wav", b"old bytes")
    data, first = read_now(store, "cc1/a.wav")
    assert data == b"old bytes"
    before = open_descriptors()
    os.replace(place(root, "cc1/a.wav.new", b"new"), path)  # as uploads replace files
    data, second = read_now(store, "cc1/a.wav")
    assert data == b"new"
    assert second.st_ino != first.st_ino
    assert kept(store)["cc1/a.wav"].st_ino == second.st_ino
    assert open_descriptors() == before  # the old file's descriptor was closed
    assert anyio.run(store.stat, "cc1/a.wav").etag == etag(second) != etag(first)


def test_a_deleted_file_is_missing_and_its_descriptor_closed(
    store: LocalMediaStore, root: Path
) -> None:
    before = open_descriptors()
    path = place(root, "cc1/a.wav", b"bytes")
    read_now(store, "cc1/a.wav")
    assert open_descriptors() == before + 1
    path.unlink()  # behind the store's back
    with pytest.raises(MediaMissing):
        read_now(store, "cc1/a.wav")
    with pytest.raises(MediaMissing):
        anyio.run(store.stat, "cc1/a.wav")
    assert kept(store) == {}
    assert open_descriptors() == before


def test_a_file_changed_in_place_is_read_as_it_is_now(store: LocalMediaStore, root: Path) -> None:
    path = place(root, "cc1/a.wav", b"0123456789")
    read_now(store, "cc1/a.wav")
    with path.open("r+b") as out:
        out.write(b"abc")
    assert read_now(store, "cc1/a.wav")[0] == b"abc3456789"
    with path.open("ab") as out:
        out.write(b"++")
    data, st = read_now(store, "cc1/a.wav")
    assert (data, st.st_size) == (b"abc3456789++", 12)
    assert anyio.run(store.stat, "cc1/a.wav").size == 12
    with path.open("r+b") as out:
        out.truncate(4)
    assert read_now(store, "cc1/a.wav")[0] == b"abc3"


def test_a_file_moved_out_of_the_store_is_not_read_through_a_symlink(
    store: LocalMediaStore, root: Path, tmp_path: Path
) -> None:
    path = place(root, "cc1/a.wav", b"was inside")
    read_now(store, "cc1/a.wav")
    time.sleep(0.05)  # past the file system's timestamp granularity
    outside = tmp_path / "outside.wav"
    os.rename(path, outside)
    os.symlink(outside, path)
    with pytest.raises(InvalidParameter):
        read_now(store, "cc1/a.wav")
    assert kept(store) == {}


def test_put_and_delete_close_the_kept_descriptor(store: LocalMediaStore, root: Path) -> None:
    before = open_descriptors()
    put(store, "cc1/a.wav", stream([b"one"]), 100)
    read_now(store, "cc1/a.wav")
    put(store, "cc1/a.wav", stream([b"two"]), 100)
    assert kept(store) == {}
    assert read_now(store, "cc1/a.wav")[0] == b"two"
    anyio.run(store.delete, "cc1/a.wav")
    assert kept(store) == {}
    assert open_descriptors() == before


def test_few_descriptors_are_kept_and_none_for_long(
    store: LocalMediaStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callrec.media import local

    monkeypatch.setattr(local, "OPEN_FILES", 2)
    for name in "abc":
        place(root, f"cc1/{name}.wav", name.encode())
        read_now(store, f"cc1/{name}.wav")
    assert sorted(kept(store)) == ["cc1/b.wav", "cc1/c.wav"]
    read_now(store, "cc1/b.wav")  # used: now the last to go
    read_now(store, "cc1/a.wav")
    assert sorted(kept(store)) == ["cc1/a.wav", "cc1/b.wav"]
    monkeypatch.setattr(local, "OPEN_FILE_IDLE", 0.05)
    time.sleep(0.1)
    read_now(store, "cc1/c.wav")
    assert sorted(kept(store)) == ["cc1/c.wav"]  # the idle ones were closed
    anyio.run(store.aclose)
    assert kept(store) == {}


def test_a_stream_keeps_reading_when_the_kept_descriptor_goes(
    store: LocalMediaStore, big: str, big_bytes: bytes
) -> None:
    async def main() -> bytes:
        body = await store.open_range(big, 0, BIG - 1)
        try:
            await store.aclose()  # closes every kept descriptor
            return b"".join([chunk async for chunk in body])
        finally:
            await body.aclose()

    assert anyio.run(main) == big_bytes


def test_nothing_is_kept_open_on_a_network_file_system(root: Path, big_bytes: bytes) -> None:
    threaded = LocalMediaStore(root, on_loop=False)
    put(threaded, "cc1/r/t.wav", stream([big_bytes]), BIG)
    anyio.run(threaded.stat, "cc1/r/t.wav")
    assert b"".join(read_range(threaded, "cc1/r/t.wav", 0, 9)) == big_bytes[:10]
    assert kept(threaded) == {}
