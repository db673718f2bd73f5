"""What ``Authenticator`` remembers between requests, and when it must forget it.

A caller is remembered per Authorization header until the next commit (on a store that
tells commits cheaply) and never past the verification's own expiry; a commit by any
process, an expiry, or a store that cannot tell commits means reading the account again.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from callrec.auth import Authenticator
from callrec.store import User
from callrec.store.sqlite import SQLiteStore

PASSWORD = "s3cret-pw"
HEADER = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "auth.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path)
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    opened.put_user(User("alice", cheap, "admin", "cc1"))
    yield opened
    opened.close()


class Counted:
    """The store, counting the account reads that ``authenticate_cached`` makes."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.reads = 0

    def peek_user(self, name: str) -> User | None:
        self.reads += 1
        return self.store.peek_user(name)

    def get_user(self, name: str) -> User | None:
        return self.store.get_user(name)

    def change_token(self) -> bytes | None:
        return self.store.change_token()


def verified(store: Counted, seconds: float = 60.0) -> Authenticator:
    auth = Authenticator(store, seconds, b"k" * 32)  # type: ignore[arg-type]
    assert auth.authenticate_cached(HEADER) is None  # never verified yet
    assert auth.authenticate(HEADER).name == "alice"
    return auth


def in_another_process(path: Path, statement: str) -> None:
    code = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code, str(path), statement], check=True)


def test_a_caller_is_remembered_until_another_process_commits(
    store: SQLiteStore, path: Path
) -> None:
    counted = Counted(store)
    auth = verified(counted)
    reads = counted.reads
    first = auth.authenticate_cached(HEADER)
    assert first is not None
    assert first.role == "admin"
    assert auth.authenticate_cached(HEADER) is first
    assert counted.reads == reads + 1  # the second was answered without reading the account

    in_another_process(path, "UPDATE users SET role = 'agent' WHERE name = 'alice'")
    changed = auth.authenticate_cached(HEADER)
    assert changed is not None
    assert changed.role == "agent"
    in_another_process(path, "DELETE FROM users WHERE name = 'alice'")
    assert auth.authenticate_cached(HEADER) is None


def test_a_commit_of_the_store_itself_is_seen(store: SQLiteStore) -> None:
    auth = verified(Counted(store))
    assert auth.authenticate_cached(HEADER) is not None
    assert store.delete_user("alice")
    assert auth.authenticate_cached(HEADER) is None


def test_nothing_is_remembered_past_the_verification(store: SQLiteStore) -> None:
    auth = verified(Counted(store), seconds=0.3)
    assert auth.authenticate_cached(HEADER) is not None
    time.sleep(0.4)
    assert auth.authenticate_cached(HEADER) is None


def test_without_a_change_token_every_request_reads_the_account(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "change_token", lambda: None)
    counted = Counted(store)
    auth = verified(counted)
    reads = counted.reads
    for _ in range(3):
        assert auth.authenticate_cached(HEADER) is not None
    assert counted.reads == reads + 3


def test_other_credentials_are_not_taken_for_remembered_ones(store: SQLiteStore) -> None:
    counted = Counted(store)
    auth = verified(counted)
    assert auth.authenticate_cached(HEADER) is not None
    wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
    assert auth.authenticate_cached(wrong) is None
    # The same credentials written another way are checked, not looked up.
    reads = counted.reads
    assert auth.authenticate_cached("basic " + HEADER.split()[1]) is not None
    assert counted.reads == reads + 1


def test_the_credentials_themselves_are_not_kept(store: SQLiteStore) -> None:
    auth = verified(Counted(store))
    assert auth.authenticate_cached(HEADER) is not None
    kept = repr(auth.__dict__).encode()
    assert PASSWORD.encode() not in kept
    assert HEADER.split()[1].encode() not in kept
