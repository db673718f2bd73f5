"""End to end: the real ``callrec serve`` on a loopback port, driven over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from callrec.demo import demo_audio
from conftest import PASSWORD, local_recording
from server import RunningServer, run_cli, running_server

pytestmark = pytest.mark.e2e

CC = "cc1"
OPS = f"/api/v2/ops/contact-centers/{CC}/recordings"


def add_user(data_dir: Path, name: str, *options: str) -> None:
    done = run_cli(
        data_dir, "users", "add", name, *options, "--password-stdin", input=f"{PASSWORD}\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    data = tmp_path / "data"
    add_user(data, "recorder", "--ops")
    add_user(data, "alice", "--role", "admin", "--contact-center", CC)
    add_user(data, "bob", "--role", "admin", "--contact-center", "cc2")
    with running_server(data) as running:
        yield running
    assert running.process.returncode is not None


def client(server: RunningServer, user: str, password: str = PASSWORD) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(user, password), timeout=30.0)


def test_post_upload_search_get_and_play(server: RunningServer) -> None:
    audio = demo_audio(3.0, seed=5)
    body = local_recording("e2e-1", mediaFiles=[{"mediaId": "call.wav", "type": "audio/wav"}])
    with client(server, "recorder") as ops, client(server, "alice") as alice:
        created = ops.post(OPS, json=body)
        assert (created.status_code, created.json()) == (200, {"statusCode": 0})
        uploaded = ops.put(
            f"{OPS}/e2e-1/media/call.wav", content=audio, headers={"Content-Type": "audio/wav"}
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["statusCode"] == 0

        found = alice.get("/api/v2/recordings", params={"callerPhoneNumber": "*4668*"})
        assert found.status_code == 200
        [recording] = found.json()["recordings"]
        assert found.json()["statusCode"] == 0
        assert recording["id"] == "e2e-1"
        [media] = recording["mediaFiles"]
        play_url = f"{server.url}/api/v2/recordings/e2e-1/play/call.wav"
        assert media["mediaUri"] == play_url
        assert media["mediaPath"] == "/recordings/e2e-1/play/call.wav"
        assert media["size"] == str(len(audio))
        assert "mediaDescriptor" not in media
        assert "originalMediaDescriptor" not in media

        got = alice.get("/api/v2/recordings/e2e-1")
        assert got.status_code == 200
        assert got.json() == {"statusCode": 0, "recording": recording}

        whole = alice.get(play_url)
        assert whole.status_code == 200
        assert whole.content == audio
        assert whole.headers["content-type"].startswith("audio/wav")
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(len(audio))
        assert whole.headers["content-disposition"].startswith("inline;")
        etag = whole.headers["etag"]

        part = alice.get(play_url, headers={"Range": "bytes=10-4999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 10-4999/{len(audio)}"
        assert part.content == audio[10:5000]

        tail = alice.get("/api/v2/recordings/e2e-1/play/call", headers={"Range": "bytes=-44"})
        assert tail.status_code == 206
        assert tail.content == audio[-44:]

        head = alice.head(play_url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(audio))
        assert head.content == b""

        assert alice.get(play_url, headers={"If-None-Match": etag}).status_code == 304
        past_the_end = f"bytes={len(audio)}-{len(audio) + 99}"
        unsatisfiable = alice.get(play_url, headers={"Range": past_the_end})
        assert unsatisfiable.status_code == 416
        assert unsatisfiable.headers["content-range"] == f"bytes */{len(audio)}"


def test_tenancy_and_authentication_over_the_wire(server: RunningServer) -> None:
    with client(server, "recorder") as ops:
        assert ops.post(OPS, json=local_recording("mine")).status_code == 200
    with client(server, "bob") as bob:
        other = bob.get("/api/v2/recordings/mine")
        assert (other.status_code, other.json()["statusCode"]) == (404, 6)
        assert bob.get("/api/v2/recordings", params={"userName": "*"}).json()["recordings"] == []
    with client(server, "alice", "wrong password") as intruder:
        denied = intruder.get("/api/v2/recordings", params={"userName": "*"})
        assert denied.status_code == 401
        assert denied.json()["statusCode"] == 20
        assert denied.headers["www-authenticate"].lower().startswith("basic")


def test_serve_demo(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--demo", timeout=60.0) as server:
        login = re.search(r"Sign in as (\S+) / (\S+)", server.output())
        assert login, server.output()
        user, password = login.groups()
        with client(server, user, password) as demo:
            found = demo.get("/api/v2/recordings", params={"userName": "*", "limit": "20"})
            assert found.status_code == 200, found.text
            recordings = found.json()["recordings"]
            assert len(recordings) == 20
            with_media = [r for r in recordings if r["mediaFiles"]]
            assert with_media
            media = with_media[0]["mediaFiles"][0]
            played = demo.get(media["mediaUri"])
            assert played.status_code == 200
            assert played.content.startswith(b"RIFF")
            assert played.content[8:12] == b"WAVE"
            assert str(len(played.content)) == media["size"]


def test_a_busy_port_is_an_error_not_a_shared_port(server: RunningServer, tmp_path: Path) -> None:
    """The HTTP server's listener allows other listeners on its port (SO_REUSEPORT): a second
    ``callrec serve`` there must refuse to start rather than take part of the requests."""
    port = server.url.rsplit(":", 1)[1]
    second = run_cli(tmp_path / "other", "serve", "--host", "127.0.0.1", "--port", port)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in second.stderr
    with client(server, "alice") as alice:
        assert alice.get("/api/v2/recordings", params={"userName": "*"}).status_code == 200


def test_sigterm_stops_serve_cleanly(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        server.process.terminate()
        assert server.process.wait(10) == 0
    assert "Listening at: http://127.0.0.1:" in server.output()
    assert "experimental" not in server.output()  # the server's start-up warning, documented
