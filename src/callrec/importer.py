"""``callrec import``: JSON lines into the store, decoded and validated in worker processes.

Decoding and validating a recording costs more than storing it, and it needs nothing from the
database, so the file is read in blocks of whole lines that a pool of processes split and
prepare while this one merges and writes the blocks already prepared, in file order (a block
crosses to a worker as one string of bytes, not as a line each). At most a few blocks are in
flight, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import codecs
import gc
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from callrec.errors import GWSError
from callrec.ingest import parse_json, prepare
from callrec.media.locations import Storages
from callrec.model import IndexKeys, Stored, to_store
from callrec.services import Services, open_storages
from callrec.settings import Settings
from callrec.store import Document

# Bytes of the file per block handed to a worker (about 7,000 demo recordings); prepared
# blocks are joined into batches of the store's ``load_size`` recordings, written by one
# ``store.load`` each.
CHUNK = 8 << 20
# Blocks submitted ahead of the one being written: two per worker, and a batch's worth (5
# blocks of demo recordings), so that the workers prepare the next batch while this process
# writes one; with two per worker only, the writer waited for a block at each batch.
AHEAD = 6
IN_FLIGHT = 16  # at most, whatever the number of workers: memory
Chunk = tuple[int, bytes]  # (number of its first line, whole lines)
Lines = list[tuple[int, bytes]]  # (line number, line)
# Per line: (number, error message, None), or (number, the recording's stored form, its
# index keys as a JSON array) when it is valid and new, or (number, the valid recording's
# JSON, None) when only merging with a stored one can complete it. Bytes cross between
# processes far cheaper than the objects they stand for, and the stored form is compressed
# where there are cores to spare, not in the one process that writes. A line is a tuple of
# plain values, which the garbage collector stops tracking the first time it sees it: the
# blocks prepared ahead cost the writing process's collection once a batch nearly nothing
# (their keys as nested tuples and lists were walked by every one: 5 µs a recording).
Prepared = list[tuple[int, str | bytes, bytes | None]]

_storages: Storages | None = None  # each worker's own, made once


def _start_worker(settings: Settings, parent: int) -> None:
    global _storages
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    _storages = open_storages(settings)
    gc.freeze()  # what start-up made lives as long as the worker: no collection walks it
    gc.disable()  # collected once a block instead (prepare_chunk)
    # The one writing process is what an import waits for: the workers take the CPU it
    # leaves, never a share of its own.
    os.nice(10)


def _exit_with(parent: int) -> None:
    """End this worker once the importing process (``parent``) is gone, even before this
    one started. Killed (``kill -9``, or a ``SIGTERM``, which Python does not turn into an
    exception), it leaves its workers waiting for their next block for ever."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def prepare_lines(ccid: str, lines: Lines, storages: Storages | None = None) -> Prepared:
    """Decode and validate each line; a bad line becomes its error message."""
    storages = storages or _storages
    assert storages is not None
    out: Prepared = []
    for line_no, line in lines:
        try:
            doc = prepare(storages, parse_json(line), ccid)
        except GWSError as error:
            out.append((line_no, error.message, None))
            continue
        except Exception as error:  # a line no check foresaw: reported, and the import goes on
            out.append((line_no, f"could not be read ({type(error).__name__})", None))
            continue
        try:
            stored = to_store(None, doc)
        except GWSError:  # no startTime of its own: it may still merge with a stored one
            out.append((line_no, orjson.dumps(doc), None))
        else:
            out.append((line_no, stored.packed, orjson.dumps(tuple(stored.keys))))
    return out


def read_chunks(path: Path, size: int = CHUNK) -> Iterator[Chunk]:
    """``path`` in blocks of whole lines of about ``size`` bytes, with their first line's
    number; together they hold every byte."""
    line_no = 1
    with path.open("rb") as handle:
        while block := handle.read(size):
            if not block.endswith(b"\n"):
                block += handle.readline()  # to the end of the line it cut
            yield line_no, block
            line_no += block.count(b"\n")
            _forget_read(handle)


def _forget_read(handle: BinaryIO) -> None:
    """Tell the system the file's pages read so far will not be read again: in its page
    cache they would push out the database's own, which the index builds then read from
    disk (a 10M import reads an 11 GB file and writes an 11 GB database)."""
    if hasattr(os, "posix_fadvise"):  # not on macOS
        with suppress(OSError):  # not on a pipe
            os.posix_fadvise(handle.fileno(), 0, handle.tell(), os.POSIX_FADV_DONTNEED)


def chunk_lines(chunk: Chunk) -> Lines:
    """The non-blank lines of a block, with their numbers; without the byte-order mark some
    editors begin a file with."""
    first, block = chunk
    if first == 1 and block.startswith(codecs.BOM_UTF8):
        block = block[len(codecs.BOM_UTF8) :]
    return [(n, line) for n, line in enumerate(block.split(b"\n"), first) if line.strip()]


def prepare_chunk(ccid: str, chunk: Chunk) -> Prepared:
    """A worker's task: a block's lines prepared."""
    prepared = prepare_lines(ccid, chunk_lines(chunk))
    gc.collect()
    return prepared


@dataclass
class ImportResult:
    imported: int = 0
    failed: int = 0


def import_file(
    services: Services,
    path: Path,
    ccid: str,
    *,
    jobs: int,
    on_error: Callable[[int, str], None],
    on_progress: Callable[[int], None],
) -> ImportResult:
    """Import ``path`` into ``ccid``; ``jobs`` worker processes (0: prepare in this one)."""
    store = services.store
    result = ImportResult()

    def write(prepared: Prepared, consumed: int) -> None:
        lines: list[int] = []
        items: list[Document | Stored] = []
        for line_no, data, keys in prepared:
            if isinstance(data, bytes):
                # Merging a recording's stored form over a stored one gives what merging the
                # recording itself would: the stored form only widened its times to its media.
                lines.append(line_no)
                items.append(
                    Stored(IndexKeys._make(orjson.loads(keys)), packed=data)
                    if keys
                    else orjson.loads(data)
                )
        stored = dict(zip(lines, store.load(ccid, items) if items else [], strict=True))
        for line_no, data, _ in prepared:  # in file order
            outcome = data if isinstance(data, str) else stored[line_no]
            if outcome is None:
                result.imported += 1
            else:
                result.failed += 1
                on_error(line_no, outcome if isinstance(outcome, str) else outcome.message)
        on_progress(consumed)

    # The collector's automatic passes are triggered by allocations, and a batch allocates
    # hundreds of thousands of tuples that all live until it is written: they cost the one
    # writing process an eighth of its time at 10M recordings, walking the same live batches
    # again and again. It runs once a batch instead, for the rare cycle (a failed line's
    # error holds its traceback).
    automatic = gc.isenabled()
    gc.disable()
    try:
        batches = _prepared(services, path, ccid, jobs)
        for prepared, consumed in _joined(batches, store.load_size):
            write(prepared, consumed)
            gc.collect()
    finally:
        if automatic:
            gc.enable()
    return result


def _prepared(
    services: Services, path: Path, ccid: str, jobs: int
) -> Iterator[tuple[Prepared, int]]:
    """Each block of ``path`` prepared, in file order, with its size in bytes."""
    if jobs <= 0:
        for chunk in read_chunks(path, CHUNK):
            yield prepare_lines(ccid, chunk_lines(chunk), services.storages), len(chunk[1])
        return
    # "spawn": the workers start clean, sharing no database connection or thread state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        jobs,
        mp_context=context,
        initializer=_start_worker,
        initargs=(services.settings, os.getpid()),
    ) as pool:
        pending: deque[tuple[Future[Prepared], int]] = deque()
        for chunk in read_chunks(path, CHUNK):
            pending.append((pool.submit(prepare_chunk, ccid, chunk), len(chunk[1])))
            if len(pending) > min(2 * jobs + AHEAD, IN_FLIGHT):
                future, size = pending.popleft()
                yield future.result(), size
        while pending:
            future, size = pending.popleft()
            yield future.result(), size


def _joined(batches: Iterator[tuple[Prepared, int]], lines: int) -> Iterator[tuple[Prepared, int]]:
    """Consecutive prepared blocks joined and cut into batches of ``lines`` lines (the last
    may hold fewer): a store's ``load_size`` is a limit, not a hint (PostgreSQL takes a lock
    a recording, and its lock table is what bounds that size). A block's bytes count with the
    batch that holds its last line."""
    joined: Prepared = []
    consumed = 0  # bytes of the blocks whose last line is in ``joined``
    for prepared, size in batches:
        joined += prepared
        while len(joined) > lines:  # this block ends in a later batch
            yield joined[:lines], consumed
            joined, consumed = joined[lines:], 0
        consumed += size
        if len(joined) == lines:
            yield joined, consumed
            joined, consumed = [], 0
    if joined or consumed:
        yield joined, consumed


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))
