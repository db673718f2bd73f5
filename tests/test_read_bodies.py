"""GET /recordings/{id} answers a recording read again with the body rendered for it before
(api.render.Bodies): every change, by this server or another process, must show at once
(SQLite) or as soon as it is heard of (PostgreSQL), and no body is served to another tenant or
under another host's play URLs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from callrec.api.render import Bodies
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import open_store
from conftest import basic, eventually, local_recording

ALICE, BOB = basic("alice"), basic("bob")
MEDIA = [{"mediaId": "a.mp3", "type": "audio/mpeg"}]


def caller(client: TestClient, headers: dict[str, str], rec_id: str = "rec-1") -> str | None:
    response = client.get(f"/api/v2/recordings/{rec_id}", headers=headers)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return str(response.json()["recording"]["callerPhoneNumber"])


def test_a_change_by_another_process_shows(
    client: TestClient, services: Services, settings: Settings
) -> None:
    services.store.upsert("cc1", [local_recording(callerPhoneNumber="+1 650 555 0001")])
    assert caller(client, ALICE) == caller(client, ALICE) == "+1 650 555 0001"
    other = open_store(settings.resolved_database_url)  # another server's process
    try:
        other.upsert("cc1", [local_recording(callerPhoneNumber="+1 650 555 0002")])
        eventually(lambda: caller(client, ALICE) == "+1 650 555 0002")
        other.delete("cc1", "rec-1")
        eventually(lambda: caller(client, ALICE) is None)
    finally:
        other.close()


def test_own_writes_show_at_once(client: TestClient, services: Services) -> None:
    recorder = basic("recorder")
    for number in ("+1 650 555 0001", "+1 650 555 0002"):
        posted = client.post(
            "/internal-api/contact-centers/cc1/recordings",
            json=[local_recording(callerPhoneNumber=number)],
            headers=recorder,
        )
        assert posted.status_code == 200, posted.text
        assert caller(client, ALICE) == caller(client, ALICE) == number


def test_bodies_are_kept_per_tenant_and_per_host(client: TestClient, services: Services) -> None:
    services.store.upsert("cc1", [local_recording(callerPhoneNumber="+1 650 555 0001")])
    services.store.upsert("cc2", [local_recording(callerPhoneNumber="+1 650 555 0002")])
    for _ in range(2):
        assert caller(client, ALICE) == "+1 650 555 0001"
        assert caller(client, BOB) == "+1 650 555 0002"
    services.store.upsert("cc1", [local_recording("rec-2", mediaFiles=MEDIA)])
    uris = set()
    for host in ("a.example", "b.example", "a.example"):
        response = client.get("/api/v2/recordings/rec-2", headers={**ALICE, "Host": host})
        uri = response.json()["recording"]["mediaFiles"][0]["mediaUri"]
        assert uri.startswith(f"http://{host}/api/v2/recordings/rec-2/play/")
        uris.add(uri)
    assert len(uris) == 2


def test_a_body_is_kept_by_what_it_is_made_of() -> None:
    bodies = Bodies()
    bodies.keep(b"stored-1", "http://a", b"one")
    assert bodies.get(b"stored-1", "http://a") == b"one"
    assert bodies.get(b"stored-2", "http://a") is None  # the recording changed
    assert bodies.get(b"stored-1", "http://b") is None  # another host's play URLs


def test_bodies_are_bounded() -> None:
    bodies = Bodies()
    big = b"x" * (Bodies.MOST_BYTES // 4)
    for n in range(4):
        bodies.keep(f"s{n}".encode(), "base", big)
    assert bodies.get(b"s3", "base") == big
    assert bodies.get(b"s0", "base") is None  # forgotten when the fourth did not fit
    assert bodies._size <= Bodies.MOST_BYTES
