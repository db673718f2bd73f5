"""Has anything been committed to a WAL-mode SQLite database since we last looked?

``PRAGMA data_version`` answers that, but it is a statement: a read transaction, with the
locking system calls of one, and in a serving process it cost about as much as the lookup
it saves. Every commit rewrites the wal-index header, the first 48 bytes of the database's
``-shm`` file (https://www.sqlite.org/walformat.html: its ``iChange`` counter, the last valid
frame, checksums and salts), so one ``pread`` of those bytes tells the same thing: if they are
the bytes seen before a read, nothing was committed since. A header caught half rewritten
differs from both the old and the new one, so it only makes the caller read again.

The ``-shm`` file carries SQLite's locks, and POSIX record locks belong to the process, not
to a descriptor: closing *any* descriptor of the file drops every lock the process holds on
it. So each process opens the file once, whatever the number of stores on it, and closes it
only when the last of them has closed its connections.
"""

from __future__ import annotations

import os
import threading

_HEADER = 48  # one copy of the wal-index header
_lock = threading.Lock()
_open: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [descriptor, stores]


class WalWatch:
    """The wal-index header of one database; ``None`` from ``open`` when it has none."""

    def __init__(self, key: tuple[int, int], fd: int) -> None:
        self._key = key
        self._fd = fd
        self._closed = False

    @classmethod
    def open(cls, database: str) -> WalWatch | None:
        """Watch ``database``, whose connections have it open in WAL mode (so that its
        ``-shm`` file exists and stays the same file while they are open)."""
        try:
            st = os.stat(database + "-shm")
        except OSError:
            return None
        if st.st_size < _HEADER:  # not a wal-index (yet): nothing to trust
            return None
        key = (st.st_dev, st.st_ino)
        with _lock:
            entry = _open.get(key)
            if entry is None:
                try:
                    fd = os.open(database + "-shm", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    return None
                # Never closed unless it is the one registered: see the module's docstring.
                entry = _open[key] = [fd, 0]
            entry[1] += 1
        return cls(key, entry[0])

    def token(self) -> bytes:
        """Bytes that change with every commit; read them *before* the reads they vouch for."""
        return os.pread(self._fd, _HEADER, 0)

    def close(self) -> None:
        """Release the file; call after the store's own connections are closed."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            entry = _open[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _open[self._key]
                os.close(entry[0])
