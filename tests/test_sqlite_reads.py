"""SQLite point reads are remembered between commits: every commit, by this store or by another
process, must show at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from callrec.store import User
from callrec.store.sqlite import SQLiteStore
from conftest import local_recording

OTHER_PROCESS = """
import sys
from callrec.store import User
from callrec.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
store.put_user(User("alice", "hash-2", "admin", "cc1"))
store.delete("cc1", "rec-1")
store.close()
"""


def test_reads_follow_every_commit(tmp_path: Path) -> None:
    path = tmp_path / "reads.db"
    store, other = SQLiteStore(path), SQLiteStore(path)
    try:
        for _ in range(2):  # the second read of each is answered from memory
            assert store.get("cc1", "rec-1") is None
            assert store.get_user("alice") is None

        other.upsert("cc1", [local_recording("rec-1")])
        other.put_user(User("alice", "hash-1", "admin", "cc1"))
        for _ in range(2):
            doc = store.get("cc1", "rec-1")
            assert doc is not None
            assert doc["callerPhoneNumber"] == "+1 (650) 466-8888"
            assert store.get("cc1", "rec-1", region="elsewhere") is None
            user = store.get_user("alice")
            assert user is not None
            assert user.password_hash == "hash-1"

        store.upsert("cc1", [local_recording("rec-1", callerPhoneNumber="+1 555 0100")])
        doc = store.get("cc1", "rec-1")
        assert doc is not None
        assert doc["callerPhoneNumber"] == "+1 555 0100"
        doc["callerPhoneNumber"] = "changed by the caller"  # a copy: the next read is intact
        again = store.get("cc1", "rec-1")
        assert again is not None
        assert again["callerPhoneNumber"] == "+1 555 0100"

        done = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path)], check=False)
        assert done.returncode == 0
        assert store.get("cc1", "rec-1") is None
        user = store.get_user("alice")
        assert user is not None
        assert user.password_hash == "hash-2"
    finally:
        store.close()
        other.close()
