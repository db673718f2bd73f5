"""Point reads remembered on PostgreSQL (store/pgremember): used on the event loop only while
they are known to hold.

Two stores on one database stand for two server processes. Each test checks what a client
would see: its own write at once, another process's write or a change made by hand as soon as
its NOTIFY arrives, a change that fires no trigger within REMEMBER_SECONDS, and nothing
remembered while the listening connection is down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from callrec.doccodec import decode
from callrec.store import UNKNOWN, RecordingStore, User, open_store, pgremember
from conftest import eventually, local_recording

CCID = "cc1"
KEY = pgremember.recording_key


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[RecordingStore, RecordingStore]]:
    first, second = open_store(pg_url), open_store(pg_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def peek(store: RecordingStore, rec_id: str, region: str | None = None) -> Any:
    """What the store remembers of the recording: its document, None, or UNKNOWN."""
    found = store.peek_stored(CCID, rec_id, region)
    return found if found is UNKNOWN or found is None else decode(found)


def remembered(store: RecordingStore, rec_id: str = "r1") -> Any:
    """Read until the row is remembered (the listening connection starts with the first
    read), then return what ``peek`` gives."""
    eventually(lambda: store.get(CCID, rec_id) is not None and peek(store, rec_id) != UNKNOWN)
    return peek(store, rec_id)


def test_reads_are_remembered_and_forgotten_on_the_own_write(
    two: tuple[RecordingStore, RecordingStore],
) -> None:
    store, _ = two
    assert peek(store, "r1") is UNKNOWN  # nothing remembered yet
    store.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0001")])
    assert remembered(store)["callerPhoneNumber"] == "+1 650 555 0001"
    assert peek(store, "r1", region="elsewhere") is None  # the region still counts
    store.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0002")])
    # At once, without waiting for the NOTIFY: a client reads its own write.
    assert peek(store, "r1") is UNKNOWN
    assert remembered(store)["callerPhoneNumber"] == "+1 650 555 0002"
    store.delete(CCID, "r1")
    assert peek(store, "r1") is UNKNOWN
    assert store.get(CCID, "r1") is None


@pytest.fixture
def long_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows kept far longer than the tests wait: what forgets them is the NOTIFY."""
    monkeypatch.setattr(pgremember, "REMEMBER_SECONDS", 600.0)


@pytest.mark.usefixtures("long_memory")
def test_another_process_write_is_heard(two: tuple[RecordingStore, RecordingStore]) -> None:
    reader, writer = two
    writer.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0001")])
    assert remembered(reader)["callerPhoneNumber"] == "+1 650 555 0001"
    writer.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0003")])
    seen = []

    def changed() -> bool:
        seen.append(peek(reader, "r1"))
        return seen[-1] is UNKNOWN

    eventually(changed)
    assert all(s is UNKNOWN or s["callerPhoneNumber"] == "+1 650 555 0001" for s in seen)
    assert reader.get(CCID, "r1")["callerPhoneNumber"] == "+1 650 555 0003"
    writer.delete(CCID, "r1")
    eventually(lambda: peek(reader, "r1") is UNKNOWN)
    assert reader.get(CCID, "r1") is None


@pytest.mark.usefixtures("long_memory")
def test_a_removed_user_is_forgotten(two: tuple[RecordingStore, RecordingStore]) -> None:
    reader, writer = two
    writer.put_user(User("ann", "hash-1", "admin", CCID))
    eventually(lambda: reader.get_user("ann") is not None and reader.peek_user("ann") != UNKNOWN)
    writer.put_user(User("ann", "hash-2", "agent", CCID))
    eventually(lambda: reader.peek_user("ann") is UNKNOWN)
    assert reader.get_user("ann") == User("ann", "hash-2", "agent", CCID)
    writer.delete_user("ann")
    eventually(lambda: reader.peek_user("ann") is UNKNOWN)
    assert reader.get_user("ann") is None


@pytest.mark.usefixtures("long_memory")
@pytest.mark.parametrize(
    "change",
    [
        "DELETE FROM recordings WHERE id = 'r1'",
        "UPDATE recordings SET region = 'elsewhere'",
        "TRUNCATE recordings CASCADE",
        "INSERT INTO users (name, password_hash, role) VALUES ('bob', 'h', 'admin')",
    ],
)
def test_a_change_by_hand_is_heard(
    two: tuple[RecordingStore, RecordingStore], pg_url: str, change: str
) -> None:
    """The tables' triggers send the NOTIFY (schema 9): a change made in psql is heard as
    soon as callrec's own."""
    store, _ = two
    store.upsert(CCID, [local_recording("r1"), local_recording("r2")])
    assert remembered(store, "r1") is not None
    assert remembered(store, "r2") is not None
    token = store.change_token()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(change)
    # What changed is not known: every row is forgotten, r2 (changed or not) too.
    eventually(lambda: peek(store, "r1") is UNKNOWN and store.change_token() != token)
    assert peek(store, "r2") is UNKNOWN


@pytest.mark.usefixtures("long_memory")
def test_writes_forget_only_the_recordings_they_change(
    two: tuple[RecordingStore, RecordingStore],
) -> None:
    reader, writer = two
    writer.upsert(CCID, [local_recording(r) for r in ("r1", "r2", "r3")])
    for rec_id in ("r1", "r2", "r3"):
        assert remembered(reader, rec_id) is not None
    writer.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0009")])
    eventually(lambda: peek(reader, "r1") is UNKNOWN)
    reader.delete(CCID, "r2")  # its own write: at once
    assert peek(reader, "r2") is UNKNOWN
    assert peek(reader, "r3")["id"] == "r3"  # still remembered
    assert reader.get(CCID, "r1")["callerPhoneNumber"] == "+1 650 555 0009"
    # Too many to name in a NOTIFY: the others forget everything.
    assert remembered(reader, "r1") is not None
    writer.upsert(CCID, [local_recording(f"bulk-{n:06}") for n in range(800)])
    eventually(lambda: peek(reader, "r1") is UNKNOWN)
    assert peek(reader, "r3") is UNKNOWN


def test_a_read_across_a_forgetting_is_not_kept() -> None:
    memory = pgremember.Remembered("postgresql://unused", connect_timeout=1)
    memory._stop.set()  # no listening thread: listening is set by hand
    memory.listening = True
    assert memory.read("k", lambda: "first") == "first"
    assert memory.peek("k") == "first"

    def load_meanwhile_changed() -> str:
        memory.forget(["k"])  # the change is heard while the row is being read
        return "stale"

    memory.forget(["k"])
    assert memory.read("k", load_meanwhile_changed) == "stale"
    assert memory.peek("k") is UNKNOWN  # not kept: it may predate the change
    assert memory.read("k", lambda: "fresh") == "fresh"
    assert memory.peek("k") == "fresh"


def test_a_change_without_triggers_is_seen_within_the_age_limit(
    two: tuple[RecordingStore, RecordingStore], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgremember, "REMEMBER_SECONDS", 1.0)
    store, _ = two
    store.upsert(CCID, [local_recording("r1", callerPhoneNumber="+1 650 555 0001")])
    assert remembered(store) is not None
    with psycopg.connect(pg_url) as conn, conn.transaction():  # no NOTIFY
        conn.execute("ALTER TABLE recordings DISABLE TRIGGER recordings_changed")
        conn.execute("DELETE FROM recordings WHERE ccid = %s AND id = 'r1'", (CCID,))
        conn.execute("ALTER TABLE recordings ENABLE TRIGGER recordings_changed")
    started = time.monotonic()
    eventually(lambda: peek(store, "r1") is UNKNOWN, seconds=3 * pgremember.REMEMBER_SECONDS)
    assert time.monotonic() - started <= 2 * pgremember.REMEMBER_SECONDS
    assert store.get(CCID, "r1") is None


def test_nothing_is_remembered_while_not_listening(
    two: tuple[RecordingStore, RecordingStore], pg_url: str
) -> None:
    store, _ = two
    store.upsert(CCID, [local_recording("r1")])
    assert remembered(store) is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = %s AND pid <> pg_backend_pid()",
            (f"LISTEN {pgremember.CHANNEL}",),
        ).fetchall()
    assert ended, "no listening connection found"
    # Whatever was remembered is forgotten once the connection is found gone ...
    eventually(lambda: peek(store, "r1") is UNKNOWN, seconds=1.0)
    # ... and reads are remembered again once it listens again.
    assert remembered(store) is not None


@pytest.mark.usefixtures("long_memory")
def test_the_change_token_moves_with_every_forgetting(
    two: tuple[RecordingStore, RecordingStore], pg_url: str
) -> None:
    """What ``Authenticator`` remembers callers by: it holds exactly as long as the rows."""
    reader, writer = two
    writer.put_user(User("ann", "hash-1", "admin", CCID))
    eventually(lambda: reader.get_user("ann") is not None and reader.peek_user("ann") != UNKNOWN)
    token = reader.change_token()
    assert token is not None
    assert reader.change_token() == token  # nothing changed
    reader.upsert(CCID, [local_recording("r1")])  # its own write: at once
    assert reader.change_token() not in (None, token)
    token = reader.change_token()
    writer.put_user(User("ann", "hash-2", "admin", CCID))  # another's: when heard of
    eventually(lambda: reader.change_token() != token)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query = %s AND pid <> pg_backend_pid()",
            (f"LISTEN {pgremember.CHANNEL}",),
        )
    eventually(lambda: reader.change_token() is None, seconds=1.0)  # not listening: none


@pytest.mark.parametrize(
    ("payload", "keys"),
    [
        ('["cc1", ["r1", "r2"]]', [KEY("cc1", "r1"), KEY("cc1", "r2")]),
        ('["cc1", []]', []),
        ("recordings", None),  # the table's trigger: anything may have changed
        ("users", None),
        ('["cc1", "r1"]', None),
        ("[1, [2]]", None),
        ('["cc1"]', None),
        ("", None),
    ],
)
def test_what_a_notification_names(payload: str, keys: list[Any] | None) -> None:
    assert pgremember._named(payload) == keys
