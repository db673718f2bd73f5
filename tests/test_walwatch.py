"""SQLite point reads remembered between commits (``store/walwatch``).

A remembered read must never outlive a commit, wherever the commit comes from: this store's
writer, another store in the process, another process, after a checkpoint that restarts the
log. Each test also runs with the watch unavailable, where ``PRAGMA data_version`` decides.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from callrec.store import User, walwatch
from callrec.store.sqlite import SQLiteStore

ALICE = User("alice", "h1", "admin", "cc1")


@pytest.fixture(params=["wal-index", "data_version"])
def watched(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "data_version":
        monkeypatch.setattr(walwatch.WalWatch, "open", classmethod(lambda cls, path: None))
    return str(request.param)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "callrec.db")


@pytest.fixture
def store(path: str, watched: str) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(path)
    assert (opened._commits is not None) == (watched == "wal-index")
    opened.put_user(ALICE)
    yield opened
    opened.close()


def hash_of(store: SQLiteStore) -> str:
    user = store.peek_user("alice")
    assert isinstance(user, User)
    return user.password_hash


def is_open(fd: int, path: str) -> bool:
    """Whether descriptor ``fd`` is (still) the ``-shm`` file of ``path``."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == path + "-shm"
    except OSError:
        return False


def shm_descriptors(path: str) -> int:
    """How many of this process's descriptors are the ``-shm`` file of ``path``."""
    return sum(is_open(int(fd), path) for fd in os.listdir("/proc/self/fd"))


def in_another_process(path: str, *statements: str) -> None:
    code = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "for statement in sys.argv[2:]:\n"
        "    conn.execute(statement).fetchall()\n"
        "conn.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, path, *statements], check=True)


def test_a_commit_by_another_process_is_seen_at_the_next_read(
    store: SQLiteStore, path: str
) -> None:
    assert hash_of(store) == "h1"  # remembered from here on
    assert hash_of(store) == "h1"
    in_another_process(path, "UPDATE users SET password_hash = 'h2' WHERE name = 'alice'")
    assert hash_of(store) == "h2"
    in_another_process(path, "DELETE FROM users WHERE name = 'alice'")
    assert store.peek_user("alice") is None


def test_commits_after_the_log_restarts_are_seen(store: SQLiteStore, path: str) -> None:
    """A checkpoint that empties the log lets the next commit write where an earlier one
    did: the same frame numbers, the same sizes. Each must still be seen."""
    for round_no in range(4):
        value = "h2" if round_no % 2 == 0 else "h1"
        assert hash_of(store) != value
        in_another_process(
            path,
            "PRAGMA wal_checkpoint(TRUNCATE)",
            f"UPDATE users SET password_hash = '{value}' WHERE name = 'alice'",
        )
        assert hash_of(store) == value


def test_a_commit_by_another_store_of_the_process_is_seen(store: SQLiteStore, path: str) -> None:
    other = SQLiteStore(path)
    try:
        assert hash_of(store) == "h1"
        other.put_user(User("alice", "h2", "admin", "cc1"))
        assert hash_of(store) == "h2"
        assert other.delete_user("alice")
        assert store.peek_user("alice") is None
    finally:
        other.close()


def test_stores_of_one_database_share_one_descriptor_closed_with_the_last(path: str) -> None:
    """Closing a descriptor of the ``-shm`` file would drop every lock the process holds on
    it, other stores' included: it stays open until the last store on it is closed."""
    first, second = SQLiteStore(path), SQLiteStore(path)
    assert first._commits is not None
    assert second._commits is not None
    entry = walwatch._open[first._commits._key]
    fd = entry.fd
    assert entry.stores == 2
    assert second._commits._key == first._commits._key
    first.close()
    first.close()  # twice: still one release
    assert entry.stores == 1
    assert is_open(fd, path)  # still open for the other store
    second.put_user(ALICE)
    assert second.peek_user("alice") == ALICE
    in_another_process(path, "DELETE FROM users")
    assert second.peek_user("alice") is None
    second.close()
    assert first._commits._key not in walwatch._open
    assert not is_open(fd, path)
    # The memory map's own descriptor went with it: nothing of the file is left open.
    assert shm_descriptors(path) == 0


def test_no_watch_without_a_wal_index(tmp_path: Path) -> None:
    assert walwatch.WalWatch.open(str(tmp_path / "nothing.db")) is None


def test_no_watch_on_a_file_too_short_to_be_a_wal_index(tmp_path: Path) -> None:
    short = tmp_path / "short.db-shm"
    short.write_bytes(b"\0" * 10)
    assert walwatch.WalWatch.open(str(tmp_path / "short.db")) is None
    st = short.stat()
    assert (st.st_dev, st.st_ino) not in walwatch._open  # nothing opened, nothing to close


def test_a_header_that_cannot_be_mapped_watches_nothing_and_keeps_the_locks(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor opened for it stays open: closing it would drop the process's locks."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(walwatch.mmap, "mmap", refuse)
    store = SQLiteStore(path)
    try:
        assert store._commits is None  # PRAGMA data_version decides instead
        assert shm_descriptors(path) == 2  # SQLite's own, and the one opened and kept
        store.put_user(ALICE)
        assert store.peek_user("alice") == ALICE
        in_another_process(path, "DELETE FROM users")
        assert store.peek_user("alice") is None
    finally:
        store.close()
