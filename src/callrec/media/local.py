"""A local directory: the embedded default storage, and the fastest one to play from.

Designed for the play hot path. A hop to a worker thread and back costs far more than a
``stat`` or ``open`` answered from the kernel's caches (the woken thread and the event loop
then contend for the GIL), so on a disk file system metadata is read on the event loop, as
the SQLite store reads rows. File data is read on the loop with ``RWF_NOWAIT``, which takes
only what is in the page cache and never waits for the disk; what is not cached is read in a
worker thread. Files played again soon are not opened again: their descriptors are kept for a
while, like nginx's ``open_file_cache``, and every use checks with one ``stat`` that the path
still names the very same, unchanged file (``_OpenFiles``). On a network file system (NFS, SMB,
FUSE, ...), where a server that hangs would hang the loop, every operation runs in a worker
thread under ``CALLREC_STORAGE_TIMEOUT``, and nothing is kept open.
``bench/media.py`` measures the result beside nginx.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio

from callrec.errors import InvalidParameter
from callrec.media import (
    MediaChanged,
    MediaMissing,
    MediaStat,
    StorageKind,
    StorageTimeout,
    UploadTooLarge,
    key_parts,
)

__all__ = ["CHUNK", "LocalBody", "LocalMediaStore", "UploadTooLarge"]

# Bytes per read and per message to the server: big enough that per-chunk costs vanish
# against copying, small enough that 200 concurrent streams stay far below 300 MB.
CHUNK = 256 * 1024
# Descriptors kept open for files played again (a player seeking sends a request per seek),
# and how long one unused is kept.
OPEN_FILES = 64
OPEN_FILE_IDLE = 10.0
ABANDONED_AFTER_S = 3600  # an upload's temporary file not written to for this long is removed
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
_MISSING = (FileNotFoundError, NotADirectoryError)
T = TypeVar("T")
log = logging.getLogger("callrec.media")


class LocalMediaStore:
    """Files under one directory; keys are relative paths that may not leave it."""

    kind: StorageKind = "local"

    def __init__(
        self, root: Path, name: str = "local", timeout: float = 10.0, on_loop: bool | None = None
    ) -> None:
        self.name = name
        self.root = root.resolve()
        self.timeout = timeout
        #: Whether metadata is read on the event loop (a disk file system) or in threads.
        self.on_loop = on_disk_file_system(self.root) if on_loop is None else on_loop
        self._root_text = str(self.root)
        self._tmp = self.root / ".incoming"
        self._open_files = _OpenFiles(self)
        self._forget_abandoned_uploads()

    def _forget_abandoned_uploads(self) -> None:
        """Remove what uploads left in ``.incoming`` when their process was killed: files not
        written to for an hour (an upload in progress writes on; servers sharing the
        directory may have some)."""
        stale = time.time() - ABANDONED_AFTER_S
        with contextlib.suppress(OSError):  # no directory yet, or a read-only store
            for entry in os.scandir(self._tmp):
                with contextlib.suppress(OSError):
                    if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < stale:
                        os.unlink(entry.path)

    def path(self, key: str) -> Path:
        """The file for ``key``; raises ``InvalidParameter`` for keys leaving the directory."""
        path = self.root.joinpath(*key_parts(key))
        # A symlink inside the store (the file or any directory above it) must not lead
        # out of it either.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidParameter("media path is not a valid relative path")
        return path

    async def stat(self, key: str) -> MediaStat:
        if self.on_loop:
            st = self.use_file(key, _stat_of)
        else:
            st = await blocking(self._stat, key, timeout=self.timeout, storage=self.name)
        return MediaStat(size=st.st_size, etag=etag(st))

    def use_file(self, key: str, use: Callable[[int, os.stat_result, str], T]) -> T:
        """``use(descriptor, stat, path)`` on the regular file ``key``, opened or kept open,
        checked as ``open_file`` checks it. Blocking: for a store ``on_loop`` only.

        The descriptor is lent for the call only: ``use`` must not keep it, nor await (it
        runs under the lock that keeps the descriptor from being closed); ``os.dup`` it to
        read from it later.
        """
        return self._open_files.use(key, use)

    def _stat(self, key: str) -> os.stat_result:
        fd, st, _ = self.open_file(key)
        os.close(fd)
        return st

    def open_file(self, key: str) -> tuple[int, os.stat_result, str]:
        """Open the regular file ``key``: (descriptor, its stat, its path). Blocking.

        The opened file's real location is checked, so that a symlink inside the store
        (the file or any directory above it) cannot lead out of it; one lookup of the
        descriptor instead of resolving every path component.
        """
        path = os.path.join(self._root_text, *key_parts(key))
        try:
            # O_NONBLOCK: opening a FIFO planted in the store must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except _MISSING:
            raise MediaMissing() from None
        try:
            if not _real_path(fd, path).startswith(self._root_text + os.sep):
                raise InvalidParameter("media path is not a valid relative path")
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise MediaMissing()
        except BaseException:
            os.close(fd)
            raise
        return fd, st, path

    async def open_range(
        self, key: str, start: int, end: int, expected: MediaStat | None = None
    ) -> LocalBody:
        if self.on_loop:
            fd, st, _ = self.use_file(key, _own)
        else:
            opening = _Opening(self, key)
            try:
                fd, st, _ = await blocking(opening.run, timeout=self.timeout, storage=self.name)
            except StorageTimeout:
                opening.abandon()
                raise
        if expected is not None and (st.st_size, etag(st)) != (expected.size, expected.etag):
            os.close(fd)
            raise MediaChanged()
        return LocalBody(fd, start, end, self)

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        target = self.path(key)
        await anyio.to_thread.run_sync(lambda: self._tmp.mkdir(parents=True, exist_ok=True))
        tmp = self._tmp / uuid.uuid4().hex
        size = 0
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge()
                    await out.write(chunk)
                await out.flush()
                await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
            await anyio.to_thread.run_sync(self._replace, tmp, target, key)
        finally:
            await anyio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
        return size

    def _replace(self, tmp: Path, target: Path, key: str) -> None:
        _publish(tmp, target)
        # Closing the last descriptor of a replaced (or deleted) file frees it, which may
        # take the file system a while: here in the worker thread, not on the loop.
        self._open_files.forget(key)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._delete, key)

    def _delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        self._open_files.forget(key)

    async def list_files(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        top = self.root.joinpath(*key_parts(prefix.rstrip("/"))) if prefix else self.root
        walk = _walk(self.root, top)
        while batch := await anyio.to_thread.run_sync(_take, walk, 1000):
            for item in batch:
                yield item

    def claim_url(self, location: str) -> str | None:
        return None  # local files are named by descriptors, never by URLs

    def claim_object(self, bucket: str, key: str) -> str | None:
        return None

    async def aclose(self) -> None:
        self._open_files.clear()


def etag(st: os.stat_result) -> str:
    """The entity tag of a local file: changes with its modification time or size."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _stat_of(fd: int, st: os.stat_result, path: str) -> os.stat_result:
    return st


def _own(fd: int, st: os.stat_result, path: str) -> tuple[int, os.stat_result, str]:
    """A descriptor of its own for the caller, which closes it."""
    return os.dup(fd), st, path


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of the same, unchanged file. A write, rename or new link moves
    the inode's change time (a new link also its link count), so a file moved or linked
    elsewhere since it was opened is opened and checked again. Whatever the path now leads
    through, a kept descriptor only ever reads a file that passed ``open_file``'s check."""
    return (
        a.st_ino == b.st_ino
        and a.st_dev == b.st_dev
        and a.st_ctime_ns == b.st_ctime_ns
        and a.st_mtime_ns == b.st_mtime_ns
        and a.st_size == b.st_size
        and a.st_nlink == b.st_nlink
    )


class _OpenFiles:
    """Descriptors of recently played files, reused while their path still names the very
    same, unchanged file (nginx's ``open_file_cache``, checked on every use).

    A use costs one ``stat`` of the path instead of ``open``, the lookup of the opened file's
    real path, ``fstat`` and ``close``. When the path is gone, names another file (a
    replaced file is another inode) or the file changed (size, modification or change
    time, links) the kept descriptor is closed and the path opened and checked afresh, so a
    file deleted or replaced is never served from the cache. A kept descriptor also keeps its
    inode from being reused for another file. At most ``OPEN_FILES`` are kept; one unused
    for ``OPEN_FILE_IDLE`` seconds is closed at the next use of the cache, and ``put`` and
    ``delete`` of a key close its descriptor at once (so that a deleted file's space is not
    held).

    Descriptors are only lent to synchronous code under the lock; whatever reads later
    (a stream) takes a descriptor of its own with ``os.dup``.
    """

    def __init__(self, store: LocalMediaStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._files: OrderedDict[str, _Kept] = OrderedDict()  # least recently used first

    def use(self, key: str, use: Callable[[int, os.stat_result, str], T]) -> T:
        with self._lock:
            files = self._files
            now = time.monotonic()
            while files:  # close the descriptors left unused for a while
                oldest = next(iter(files))
                if files[oldest].used > now - OPEN_FILE_IDLE:
                    break
                self._close(oldest)
            kept = files.get(key)
            if kept is not None:
                try:
                    st: os.stat_result | None = os.stat(kept.path)
                except OSError:
                    st = None
                if st is not None and _same_file(st, kept.stat):
                    kept.used = now
                    files.move_to_end(key)
                    return use(kept.fd, st, kept.path)
                self._close(key)
            fd, st, path = self._store.open_file(key)
            files[key] = _Kept(fd, st, path, now)
            if len(files) > OPEN_FILES:
                self._close(next(iter(files)))  # the least recently used, never this one
            return use(fd, st, path)

    def _close(self, key: str) -> None:
        os.close(self._files.pop(key).fd)

    def forget(self, key: str) -> None:
        with self._lock:
            kept = self._files.pop(key, None)
        if kept is not None:  # closed outside the lock: plays need not wait for it
            os.close(kept.fd)

    def clear(self) -> None:
        with self._lock:
            while self._files:
                self._close(next(iter(self._files)))


class _Kept:
    __slots__ = ("fd", "path", "stat", "used")

    def __init__(self, fd: int, st: os.stat_result, path: str, used: float) -> None:
        self.fd = fd
        self.stat = st
        self.path = path
        self.used = used


class _Opening:
    """Opening a file in a worker thread that may be abandoned (a hung file server): a file
    opened after the request gave up is closed, not leaked."""

    def __init__(self, store: LocalMediaStore, key: str) -> None:
        self._store = store
        self._key = key
        self._lock = threading.Lock()
        self._abandoned = False
        self._fd: int | None = None

    def run(self) -> tuple[int, os.stat_result, str]:
        fd, st, path = self._store.open_file(self._key)
        with self._lock:
            if self._abandoned:
                os.close(fd)
                raise MediaMissing()
            self._fd = fd
        return fd, st, path

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self._fd is not None:
                os.close(self._fd)


class LocalBody:
    """An open file and the range to send from it."""

    def __init__(self, fd: int, start: int, end: int, store: LocalMediaStore) -> None:
        self._fd: int | None = fd
        self._position = start
        self._end = end
        self._store = store

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self._fd is not None and self._position <= self._end:
            want = min(CHUNK, self._end - self._position + 1)
            chunk = read_cached(self._fd, want, self._position)
            if chunk is None:
                chunk = await blocking(
                    os.pread,
                    self._fd,
                    want,
                    self._position,
                    timeout=self._store.timeout,
                    storage=self._store.name,
                )
            if not chunk:
                return  # the file shrank; the server notices the short body
            self._position += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a body opened but never sent (the request failed)
        if self._fd is not None:
            os.close(self._fd)


async def blocking(function: Callable[..., T], *args: object, timeout: float, storage: str) -> T:
    """``function(*args)`` in a worker thread, given up (504) after ``timeout`` seconds: a
    hung disk or network mount must not hang the request, nor the event loop."""
    try:
        with anyio.fail_after(timeout):
            return await anyio.to_thread.run_sync(partial(function, *args), abandon_on_cancel=True)
    except TimeoutError:
        log.warning("storage %s: the file system did not answer in %.1f s", storage, timeout)
        raise StorageTimeout() from None


# Disk (and memory) file systems: their metadata lives in the kernel's caches or one disk
# access away. Anything else may be a server on the network.
DISK_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "reiserfs", "bcachefs"}
    | {"nilfs2", "tmpfs", "ramfs", "overlay"}
)


def on_disk_file_system(path: Path, mountinfo: str | None = None) -> bool:
    """Whether ``path`` lies on a disk file system, per ``/proc/self/mountinfo`` (Linux);
    False when that cannot be told."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return False
    lines = mountinfo.splitlines()
    best, kind = "", ""
    target = str(path)
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[fields.index("-") + 1]
    return kind in DISK_FILE_SYSTEMS


def _real_path(fd: int, path: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")  # Linux: the opened file's real path
    except OSError:
        return os.path.realpath(path)


def read_cached(fd: int, size: int, offset: int) -> bytes | None:
    """The bytes at ``offset`` if all of them are in the page cache, else None (never
    waits for the disk)."""
    if not _NOWAIT:
        return None
    buffer = bytearray(size)
    try:
        got = os.preadv(fd, [buffer], offset, _NOWAIT)
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    if got < size and got > 0:
        return None  # partly cached (or end of file): let the thread read it all
    return bytes(buffer) if got == size else b""


def _walk(root: Path, top: Path) -> Iterator[tuple[str, int]]:
    for directory, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".incoming"))
        for name in sorted(files):
            path = Path(directory, name)
            try:
                size = path.stat().st_size
            except OSError:
                continue  # removed while walking
            yield path.relative_to(root).as_posix(), size


def _take(items: Iterator[tuple[str, int]], count: int) -> list[tuple[str, int]]:
    return [item for _, item in zip(range(count), items, strict=False)]


def _publish(tmp: Path, target: Path) -> None:
    """Move a complete, synced file into place and sync the directory entry too."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
