"""Durability and concurrency of the real server: kill -9 loses nothing acknowledged, and
concurrent readers and writers neither fail nor lose each other's merges."""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from callrec.model import merge_recordings, validate_recording
from callrec.store import User, open_store
from conftest import PASSWORD, local_recording
from server import RunningServer, running_server

pytestmark = pytest.mark.e2e

CC = "cc1"
OPS = f"/api/v2/ops/contact-centers/{CC}/recordings"
WAIT = 60.0  # bound on any wait for worker threads; never reached when things work


@pytest.fixture
def data(tmp_path: Path, password_hash: str) -> Path:
    """A data directory with an OPS account (recorder) and an admin of cc1 (alice)."""
    data_dir = tmp_path / "data"
    store = open_store(f"sqlite:///{data_dir / 'callrec.db'}")
    try:
        store.put_user(User("recorder", password_hash, "ops"))
        store.put_user(User("alice", password_hash, "admin", CC))
    finally:
        store.close()
    return data_dir


def client(server: RunningServer, user: str = "recorder") -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=(user, PASSWORD), timeout=30.0)


def expected_document(body: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps for a recording created by ``body`` (no media locations)."""
    doc = merge_recordings(None, validate_recording(body, CC))
    return orjson.loads(orjson.dumps(doc))  # type: ignore[no-any-return]


def stored_recordings(server: RunningServer) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"{OPS}?startTime=0&limit=1000"
    with client(server) as ops:
        while url:
            page = ops.get(url)
            assert page.status_code == 200, page.text
            found |= {d["id"]: d for d in page.json()["recordings"]}
            url = page.links.get("next", {}).get("url")
    return found


def kill_9(server: RunningServer) -> None:
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=WAIT)
    assert server.process.returncode == -signal.SIGKILL


def run_until_killed(
    server: RunningServer,
    workers: int,
    work: Callable[[httpx.Client, int, int], bool],
    acknowledgements: int,
) -> None:
    """Run ``work(client, worker, n)`` for n = 0, 1, ... in ``workers`` threads; kill -9 the
    server as soon as ``acknowledgements`` calls in total returned True (while the other
    threads still have requests in flight)."""
    lock = threading.Lock()
    count = 0
    enough = threading.Event()
    killing = threading.Event()
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        nonlocal count
        try:
            with client(server) as http:
                for n in range(10_000):
                    if killing.is_set():
                        return
                    try:
                        acknowledged = work(http, w, n)
                    except httpx.TransportError:
                        if killing.is_set():
                            return
                        raise
                    if acknowledged:
                        with lock:
                            count += 1
                            if count >= acknowledgements:
                                enough.set()
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            enough.set()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(WAIT), "the workers never reached the acknowledgement count"
    finally:
        killing.set()
        kill_9(server)
        for thread in threads:
            thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- kill -9


def test_acknowledged_recordings_survive_kill_9(data: Path) -> None:
    acked: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def body(rec_id: str, n: int) -> dict[str, Any]:
        return local_recording(
            rec_id,
            startTime=f"2021-03-04T05:{n % 60:02d}:{n // 60 % 60:02d}.{n % 1000:03d}Z",
            stopTime="2021-03-04T07:00:00Z",
            callType="Inbound",
            custom={"n": n, "text": f"Grüße {n}"},
        )

    with running_server(data) as server:
        with client(server) as ops:
            for n in range(100):
                sent = body(f"seq-{n}", n)
                answer = ops.post(OPS, json=sent)
                assert (answer.status_code, answer.json()) == (200, {"statusCode": 0})
                acked[sent["id"]] = sent

        def post(http: httpx.Client, worker: int, n: int) -> bool:
            # Every third request is a bulk post of three recordings.
            count = 3 if n % 3 == 0 else 1
            sent = [body(f"w{worker}-{n}-{k}", n + k) for k in range(count)]
            answer = http.post(OPS, json=sent if count > 1 else sent[0])
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"statusCode": 0}
            with lock:
                acked.update({s["id"]: s for s in sent})
            return True

        run_until_killed(server, workers=4, work=post, acknowledgements=200)

    with running_server(data) as server:
        stored = stored_recordings(server)
    assert len(acked) >= 300
    missing = sorted(set(acked) - set(stored))
    assert not missing, f"{len(missing)} acknowledged recordings lost, e.g. {missing[:5]}"
    for rec_id, sent in acked.items():
        assert stored[rec_id] == expected_document(sent)


def test_acknowledged_uploads_survive_kill_9(data: Path) -> None:
    def payload(worker: int, n: int) -> bytes:
        # Sizes on both sides of the 256 KiB read chunk, from a few bytes up.
        size = random.Random(worker * 1000 + n).choice(
            [1, 100, 4096, 262143, 262144, 262145, 700_001]
        )
        return random.Random(f"{worker}-{n}").randbytes(size)

    sent: dict[tuple[str, str], bytes] = {}
    acked: set[tuple[str, str]] = set()
    lock = threading.Lock()
    workers, per_worker = 4, 40

    with running_server(data) as server:
        with client(server) as ops:
            bulk = [local_recording(f"m{w}-{n}") for w in range(workers) for n in range(per_worker)]
            assert ops.post(OPS, json=bulk).json() == {"statusCode": 0}

        def upload(http: httpx.Client, worker: int, n: int) -> bool:
            if n >= per_worker:
                return False
            key = (f"m{worker}-{n}", f"part-{n}.wav")
            content = payload(worker, n)
            with lock:
                sent[key] = content
            answer = http.put(f"{OPS}/{key[0]}/media/{key[1]}", content=content)
            assert answer.status_code == 200, answer.text
            assert answer.json()["size"] == len(content)
            with lock:
                acked.add(key)
            return True

        run_until_killed(server, workers=workers, work=upload, acknowledgements=60)

    with running_server(data) as server, client(server) as ops:
        stored = stored_recordings(server)
        present = {
            (rec_id, media["mediaId"])
            for rec_id, doc in stored.items()
            for media in doc["mediaFiles"]
        }
        assert acked <= present, f"acknowledged uploads lost: {sorted(acked - present)[:5]}"
        # Every file the catalogue points at plays back whole, acknowledged or not.
        for rec_id, media_id in present:
            played = ops.get(f"{OPS}/{rec_id}/play/{media_id}")
            assert played.status_code == 200, (rec_id, media_id, played.text)
            assert played.content == sent[(rec_id, media_id)], (rec_id, media_id)


# --------------------------------------------------------------------------- concurrency


@pytest.fixture
def server(data: Path) -> Iterator[RunningServer]:
    with running_server(data) as running:
        yield running


def test_concurrent_readers_and_writers(server: RunningServer) -> None:
    threads, rounds = 8, 40
    with client(server) as ops:
        assert ops.post(OPS, json=local_recording("shared", eventHistory=[])).status_code == 200
    uploads: dict[str, bytes] = {}
    barrier = threading.Barrier(threads)

    def run(t: int) -> list[tuple[str, int, Any]]:
        answers: list[tuple[str, int, Any]] = []
        with client(server) as ops, client(server, "alice") as alice:
            barrier.wait(WAIT)
            for i in range(rounds):
                kind = (t + i) % 5
                if kind == 0:
                    answer = ops.post(
                        OPS,
                        json=local_recording(
                            "shared",
                            mediaFiles=[{"mediaId": f"t{t}-{i}.mp3", "type": "audio/mp3"}],
                            eventHistory=[
                                {
                                    "event": "Joined",
                                    "contact": {"type": "Agent", "userName": f"u{t}-{i}"},
                                }
                            ],
                        ),
                    )
                elif kind == 1:
                    answer = ops.post(OPS, json=local_recording(f"own-{t}-{i}", callType=str(t)))
                elif kind == 2:
                    content = random.Random(t * 100 + i).randbytes(1000 + 97 * i)
                    uploads[f"up-{t}-{i}.wav"] = content
                    answer = ops.put(f"{OPS}/shared/media/up-{t}-{i}.wav", content=content)
                elif kind == 3:
                    answer = alice.get(
                        "/api/v2/recordings", params={"callerPhoneNumber": "*4668*", "limit": "50"}
                    )
                else:
                    answer = alice.get("/api/v2/recordings/shared")
                body = (
                    answer.json()
                    if answer.headers.get("content-type") == "application/json"
                    else None
                )
                answers.append(
                    (f"{answer.request.method} {answer.request.url.path}", answer.status_code, body)
                )
        return answers

    with ThreadPoolExecutor(threads) as pool:
        results = [a for answers in pool.map(run, range(threads)) for a in answers]

    assert len(results) == threads * rounds
    failures = [r for r in results if r[1] != 200 or (r[2] or {}).get("statusCode") != 0]
    assert not failures, failures[:5]
    assert "database is locked" not in server.output()

    with client(server) as ops:
        shared = ops.get(f"{OPS}/shared").json()["recording"]
        media_ids = {m["mediaId"] for m in shared["mediaFiles"]}
        posted = {
            f"t{t}-{i}.mp3" for t in range(threads) for i in range(rounds) if (t + i) % 5 == 0
        }
        assert posted | set(uploads) == media_ids
        users = {e["contact"]["userName"] for e in shared["eventHistory"]}
        assert users == {
            f"u{t}-{i}" for t in range(threads) for i in range(rounds) if (t + i) % 5 == 0
        }
        for media_id, content in uploads.items():
            played = ops.get(f"{OPS}/shared/play/{media_id}")
            assert played.content == content, media_id
        own = {rec_id for rec_id in stored_recordings(server) if rec_id.startswith("own-")}
        assert own == {
            f"own-{t}-{i}" for t in range(threads) for i in range(rounds) if (t + i) % 5 == 1
        }
