"""The play response (callrec.api.play.MediaResponse) at the ASGI level: the bytes of the file
the headers were made from, stopping when the client leaves, aborting a short body."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from callrec.api.play import WATCH_ABOVE, MediaResponse
from callrec.errors import StorageUnavailable
from callrec.media.local import LocalMediaStore

CHUNK = 64 * 1024


class FakeBody:
    """A storage body that counts what was read from it."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            await anyio.lowlevel.checkpoint()
            self.read += 1
            yield b"x" * CHUNK

    async def aclose(self) -> None:
        self.closed = True


def scope(**extensions: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "extensions": extensions, "asgi": {}}


async def serve(
    response: MediaResponse, scope: dict[str, Any], gone_after: int | None = None
) -> list[dict[str, Any]]:
    """Run the response against a fake server; the client leaves after ``gone_after`` body
    messages."""
    sent: list[dict[str, Any]] = []
    left = anyio.Event()

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if gone_after is not None and len(sent) - 1 >= gone_after:
            left.set()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    await response(scope, receive, send)
    return sent


def test_a_local_file_replaced_after_it_was_opened_is_sent_as_it_was(tmp_path: Path) -> None:
    """The bytes sent are those of the file the headers were made from, even where the server
    offers to send files by their path (it would open the path after the headers went out,
    and find the file that replaced it)."""
    store = LocalMediaStore(tmp_path)
    (tmp_path / "cc1").mkdir()
    (tmp_path / "cc1" / "a.wav").write_bytes(b"0123456789")

    async def main() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        whole = MediaResponse(await store.open_range("cc1/a.wav", 0, 9), 10, 200, {}, "audio/wav")
        part = MediaResponse(await store.open_range("cc1/a.wav", 2, 5), 4, 206, {}, "audio/wav")
        (tmp_path / "new.wav").write_bytes(b"replaced, and longer")
        os.replace(tmp_path / "new.wav", tmp_path / "cc1" / "a.wav")  # as an upload does
        pathsend = scope(**{"http.response.pathsend": {}})
        return await serve(whole, pathsend), await serve(part, pathsend)

    whole, part = anyio.run(main)
    assert "http.response.pathsend" not in [m["type"] for m in whole]
    assert b"".join(m["body"] for m in whole[1:]) == b"0123456789"
    assert [m.get("body") for m in part[1:]] == [b"2345"]
    assert part[1]["more_body"] is False


def test_a_client_leaving_stops_the_stream_and_releases_the_body() -> None:
    body = FakeBody(chunks=1000)
    response = MediaResponse(body, 1000 * CHUNK, 200, {}, "audio/wav")
    sent = anyio.run(lambda: serve(response, scope(), gone_after=3))
    assert body.closed
    assert body.read < 20  # not the 1000 chunks
    assert len(sent) < 20
    assert not any(m.get("more_body") is False for m in sent)  # never claims completion


def test_a_body_shorter_than_announced_aborts_the_response() -> None:
    body = FakeBody(chunks=2)
    response = MediaResponse(body, 3 * CHUNK, 200, {}, "audio/wav")
    with pytest.raises(StorageUnavailable):
        anyio.run(lambda: serve(response, scope()))
    assert body.closed


@pytest.mark.parametrize("chunks", [1, 3, (WATCH_ABOVE // CHUNK) + 3])
def test_a_complete_body_is_sent_and_closed(chunks: int) -> None:
    body = FakeBody(chunks)
    response = MediaResponse(
        body, chunks * CHUNK, 200, {"Content-Length": str(chunks * CHUNK)}, "audio/wav"
    )
    sent = anyio.run(lambda: serve(response, scope()))
    assert sent[0]["status"] == 200
    assert (b"content-length", str(chunks * CHUNK).encode()) in sent[0]["headers"]
    assert sum(len(m["body"]) for m in sent[1:]) == chunks * CHUNK
    assert sent[-1]["more_body"] is False
    assert body.closed
