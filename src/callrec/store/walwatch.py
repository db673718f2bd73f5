"""Has anything been committed to a WAL-mode SQLite database since we last looked?

``PRAGMA data_version`` answers that, but it is a statement: a read transaction, with the
locking system calls of one, and in a serving process it cost about as much as the lookup
it saves. Every commit rewrites the wal-index header, the first 48 bytes of the database's
``-shm`` file (https://www.sqlite.org/walformat.html: its ``iChange`` counter, the last valid
frame, checksums and salts), so a look at those bytes tells the same thing: if they are the
bytes seen before a read, nothing was committed since. A header caught half rewritten differs
from both the old and the new one, so it only makes the caller read again.

The bytes are read through a shared memory map of the file's first page, as SQLite itself
reads them: no system call. A ``pread`` cost a system call and, worse, released the GIL: in a
serving process a server thread waiting for the GIL took it then, and the event loop waited
to get it back, a switch of threads on every read (measured in ``docs/performance.md``).

The ``-shm`` file carries SQLite's locks, and POSIX record locks belong to the process, not
to a descriptor: closing *any* descriptor of the file drops every lock the process holds on
it. So each process opens the file once, whatever the number of stores on it, and closes it
only when the last of them has closed its connections. (The memory map holds a descriptor of
its own, a duplicate that Python's ``mmap`` closes with the map: so the map too lives as long
as the file's entry.)
"""

from __future__ import annotations

import mmap
import os
import threading

_HEADER = 48  # one copy of the wal-index header
_lock = threading.Lock()
_open: dict[tuple[int, int], _Header] = {}  # (device, inode) -> the open file


class _Header:
    """The ``-shm`` file open once in this process: its descriptor and a map of its header."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, _HEADER, prot=mmap.PROT_READ)
        self.stores = 0

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class WalWatch:
    """The wal-index header of one database; ``None`` from ``open`` when it has none."""

    def __init__(self, key: tuple[int, int], header: _Header) -> None:
        self._key = key
        self._map = header.map
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
                try:
                    entry = _Header(fd)
                except (OSError, ValueError):
                    # Cannot be mapped: watch nothing. The descriptor stays open, unused:
                    # closing it would drop the process's SQLite locks on the file. (When
                    # mmap() itself fails, out of memory, Python has already closed the
                    # duplicate it made: that one case it is not in our hands to avoid.)
                    return None
                _open[key] = entry
            entry.stores += 1
        return cls(key, entry)

    def token(self) -> bytes:
        """Bytes that change with every commit; read them *before* the reads they vouch for."""
        return self._map[:_HEADER]

    def close(self) -> None:
        """Release the file; call after the store's own connections are closed."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            entry = _open[self._key]
            entry.stores -= 1
            if entry.stores == 0:
                del _open[self._key]
                entry.close()
