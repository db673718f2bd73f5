"""The embedded SQLite store.

Concurrency as Datasette does it: one read connection per thread (WAL readers never block,
and a thread never waits for another's connection), and every write through one connection,
serialised by a lock and run as ``BEGIN IMMEDIATE``, so no request ever sees "database is
locked". ``synchronous=FULL``: a commit that returned is on
disk, so an acknowledged write survives a kill -9 (and a power cut).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from callrec.doccodec import decode
from callrec.errors import GWSError
from callrec.model import IndexKeys, Stored, index_keys, item_id, merge_stored, unchanged
from callrec.query import RecordingQuery
from callrec.store import (
    Document,
    DocumentSearch,
    SearchKey,
    User,
    sqliteblocks,
    sqlitenames,
    sqliterows,
)
from callrec.store.sqliteschema import DERIVED, IDS, build_steps, kind, migrate
from callrec.store.sqlsearch import SQLITE, plan_search, search_sql
from callrec.store.walwatch import WalWatch

_LOADING = dataclasses.replace(SQLITE, trigrams=False)  # searches while those are dropped
_REMEMBERED_ROWS = 20_000  # per thread, between two commits (as pgremember.MOST_ROWS)
# Plans' figures (bounded counts, the blocks' overlap), remembered until the recordings grew
# by 3-6% (``_generation``): counting up to the planner's cap reads up to 31,600 index
# entries at 10M (8 ms), as much as the search it plans, and every page of a query paged
# through plans it again.
_REMEMBERED_COUNTS = 4096


def _generation(total: int) -> int:
    """``total`` to its 5 leading bits: it changes each time ``total`` grows by 1/32 to 1/16."""
    return total >> max(0, total.bit_length() - 5)


# (pragma, during a bulk load, otherwise)
_BULK_PRAGMAS = [
    ("synchronous", "NORMAL", "FULL"),
    ("wal_autocheckpoint", "65536", "1000"),
    ("cache_size", "-1048576", "-2000"),
]
# Recordings a bulk load's transaction holds: its batches (``load_size``) share one until it
# holds this many. A commit writes every page it changed, and a batch's ids land all over
# their index: at 10M recordings, commits of 128,000 rather than 32,000 write half the
# pages a recording, which the page cache of a bulk load (1 GB) holds until the commit.
LOAD_COMMIT = 128_000
# (pragma, while building indexes, otherwise). An index build sorts its keys in runs the
# size of the page cache; runs of 16 MB are each sorted and written by a helper thread while
# this one reads on, and merged by several: the B-tree builds take 0.6x the time of one
# sort of 256 MB on two cores (docs/performance.md). SQLite allows at most 8 helpers.
_BUILD_PRAGMAS = [
    ("threads", str(min(8, len(os.sched_getaffinity(0)))), "0"),
    ("cache_size", "-16384", "-2000"),
]


def _set_pragmas(conn: sqlite3.Connection, pragmas: list[tuple[str, str, str]], which: int) -> None:
    for pragma in pragmas:
        conn.execute(f"PRAGMA {pragma[0]} = {pragma[which]}")


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    # Reads through a shared memory map: no read() call per page, one copy in the OS cache
    # for every connection. Stock builds of SQLite map at most the first 2 GB of the file,
    # whatever is asked (SQLITE_MAX_MMAP_SIZE); a build that allows more takes up to 16 GB.
    conn.execute("PRAGMA mmap_size = 17179869184")
    return conn


class SQLiteStore(DocumentSearch):
    """``RecordingStore`` over one SQLite file in WAL mode."""

    # Recordings an import hands to ``load`` at a time. Each commit writes every page it
    # changed to the log, and a batch's new entries land all over the names table and the
    # index of ids (a page for nearly each): 32,000 recordings to a transaction wrote far
    # fewer pages per recording than 8,000 (docs/performance.md), and in a bulk load
    # batches share transactions of ``LOAD_COMMIT``. Readers never wait for a writer;
    # another writer waits for one such transaction (a few seconds).
    load_size = 32_000

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # the writer's: held through a bulk load's transaction
        self._readers_lock = threading.Lock()  # so a read never waits for a write
        self._all_new = True  # whether the last batch merged had no id stored or repeated
        self._loading = False  # in a bulk load into an empty store
        self._uncommitted: int | None = None  # recordings of its open transaction, if any
        self._load_owner = 0  # the thread that holds it (and the write lock)
        self._writer = _connect(self.path)
        self._writer.execute("PRAGMA journal_mode = WAL")
        with self._lock:
            self.schema_version = migrate(self._writer)
        self._build_missing()
        self.optimize()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._commits = WalWatch.open(self.path)
        self._counts: dict[tuple[Any, ...], float] = {}
        self._structures: tuple[int, bool] | None = None  # (schema version, complete)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._uncommitted is not None and self._load_owner == threading.get_ident():
            self._commit_load()  # a write between a bulk load's batches: they come first
        with self._lock:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    @contextmanager
    def _load_write(self, recordings: int) -> Iterator[sqlite3.Connection]:
        """``load``'s writes: as ``_write``, but in a bulk load a batch is a savepoint of a
        transaction that stays open (holding the write lock) until it holds ``LOAD_COMMIT``
        recordings or the load ends."""
        if not self._loading:
            with self._write() as conn:
                yield conn
            return
        conn = self._writer
        if self._uncommitted is None:
            self._lock.acquire()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._lock.release()
                raise
            self._uncommitted = 0
            self._load_owner = threading.get_ident()
        conn.execute("SAVEPOINT load_batch")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO load_batch")
            conn.execute("RELEASE load_batch")
            raise
        conn.execute("RELEASE load_batch")
        self._uncommitted += recordings
        if self._uncommitted >= LOAD_COMMIT:
            self._commit_load()

    def _commit_load(self) -> None:
        """Commit a bulk load's open transaction, if any, and release the write lock."""
        if self._uncommitted is None:
            return
        try:
            self._writer.execute("COMMIT")
        finally:
            if self._writer.in_transaction:  # the commit failed: nothing of it is kept
                self._writer.execute("ROLLBACK")
            self._uncommitted = None
            self._lock.release()

    def _build_missing(self) -> bool:
        """Build the indexes and triggers a bulk load dropped (and, if it was killed, never
        built again), a step to a transaction. Returns whether there was anything to build."""
        built = False
        try:
            while True:
                with self._write() as conn:  # what is missing, asked under the write lock
                    present = {
                        name
                        for (name,) in conn.execute(
                            "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')"
                        )
                    }
                    steps = build_steps({n: d for n, d in DERIVED.items() if n not in present})
                    if not steps:
                        return built
                    if not built:  # the builds' settings, only when there is something to build
                        _set_pragmas(conn, _BUILD_PRAGMAS, 1)
                        built = True
                    for statement in steps[0]:
                        if statement == DERIVED[IDS]:  # a load may have stored an id twice
                            sqliterows.index_ids(conn)
                        else:
                            conn.execute(statement)
        finally:
            if built:
                with self._lock:
                    _set_pragmas(self._writer, _BUILD_PRAGMAS, 2)

    @contextmanager
    def bulk_load(self) -> Iterator[bool]:
        """For a load into an empty store: the secondary indexes are dropped and built once
        at the end, which is several times cheaper than keeping them up to date row by row.
        Yields whether it did so; searches are slow until the load ends. So are reads and
        writes by id, which read the whole table while the index of ids is missing (it is
        built at once when a batch needs a merge, ``_save``).

        Meanwhile commits are not flushed one by one (``synchronous = NORMAL``), and into
        an empty store batches are committed several at a time (``LOAD_COMMIT``): a killed
        load loses the batches of its open transaction, which loading the file again adds,
        and keeps the rest; a power cut may lose the last commits too. The last commit,
        made with ``FULL`` again, flushes them all. The log is checkpointed less often and
        the page cache is larger.
        """
        with self._write() as conn:
            deferred = conn.execute("SELECT 1 FROM recordings LIMIT 1").fetchone() is None
            if deferred:
                for name, ddl in DERIVED.items():
                    conn.execute(f"DROP {kind(ddl)} IF EXISTS {name}")
        with self._lock:
            # Fewer flushes, fewer checkpoints, and the indexes' hot pages kept in memory.
            _set_pragmas(self._writer, _BULK_PRAGMAS, 1)
        # Batches share transactions only when the store was empty: into a live database, a
        # server's writes wait for a transaction at most one batch long.
        self._loading = deferred
        try:
            yield deferred
        finally:
            self._loading = False
            self._commit_load()  # what was loaded stays, whatever stopped the load
            with self._lock:
                _set_pragmas(self._writer, _BULK_PRAGMAS, 2)
            with self._write() as conn:  # a commit that flushes the log, whatever came before
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('bulk_load', ?)",
                    (str(time.time()),),
                )
            if deferred:
                self._build_missing()

    def _read(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path)
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # Recordings

    def _point_read(self, sql: str, params: tuple[str, ...]) -> Any:
        """One row by key, remembered until anything is committed to the database.

        The wal-index header (``walwatch``) changes with every commit, by any connection of
        any process: a look at memory instead of a lookup, for the reads every request makes
        (its user, the recording it plays, each seek again). Without one, ``PRAGMA
        data_version`` tells the same (other connections' commits, this store's writer's
        included) at the cost of a statement.
        """
        conn = self._read()
        local = self._local
        version = self.change_token() or conn.execute("PRAGMA data_version").fetchone()[0]
        rows: dict[tuple[str, tuple[str, ...]], Any] | None = getattr(local, "rows", None)
        if rows is None or local.version != version or len(rows) >= _REMEMBERED_ROWS:
            rows = local.rows = {}
            local.version = version
        key = (sql, params)
        if key not in rows:
            rows[key] = conn.execute(sql, params).fetchone()
        return rows[key]

    def change_token(self) -> bytes | None:
        return None if self._commits is None else self._commits.token()

    def peek_stored(self, ccid: str, recording_id: str, region: str | None = None) -> bytes | None:
        row = self._point_read(  # a local read: never a wait
            "SELECT doc, region FROM recordings WHERE ccid = ? AND id = ?", (ccid, recording_id)
        )
        if row is None or (region is not None and row[1] != region):
            return None
        stored: bytes = row[0]
        return stored

    async def fetch_stored(
        self, ccid: str, recording_id: str, region: str | None = None
    ) -> bytes | None:
        return self.peek_stored(ccid, recording_id, region)

    def get(self, ccid: str, recording_id: str, region: str | None = None) -> Document | None:
        stored = self.peek_stored(ccid, recording_id, region)
        return None if stored is None else decode(stored)

    def search_stored(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[bytes]:
        conn = self._read()
        total = conn.execute("SELECT max(pk) FROM recordings").fetchone()[0] or 0

        def count(sql: str, params: list[Any], cap: int) -> int:
            def counted() -> int:
                row = conn.execute(f"SELECT count(*) FROM ({sql} LIMIT {cap})", params)
                return int(row.fetchone()[0])

            return int(self._remembered((sql, *params, cap, _generation(total)), counted))

        complete = self._complete(conn)
        if query.user and complete:
            # userName: ordered ranges of the names index (sqlitenames), unless a number is
            # rarer than the names.
            names = sqlitenames.plan(conn, ccid, query.user, limit, total)
            if names.branches == ():
                return []  # in every group, some term matches no name
            if names.branches and not sqlitenames.number_drives(
                ccid, query, names.rows, total, limit, count
            ):
                return sqlitenames.read_page(
                    conn, ccid, query, names.branches, limit=limit, after=after, region=region
                )
        # While a bulk load has the trigram and dictionary triggers dropped, their tables
        # know nothing of the rows loaded: numbers and names are then matched row by row.
        dialect = SQLITE if complete else _LOADING
        by_blocks = (
            complete
            and sqliteblocks.has_infix(query)
            and self._remembered(
                ("overlap", _generation(total)), lambda: sqliteblocks.overlap(conn)
            )
            <= sqliteblocks.IN_ORDER
        )
        plan = plan_search(dialect, ccid, query, limit, total, count, trigrams_first=by_blocks)
        if plan.trigram_numbers and by_blocks:
            return sqliteblocks.read_page(
                conn, ccid, query, plan, limit=limit, after=after, region=region
            )
        sql, params = search_sql(
            dialect, ccid, query, limit=limit, after=after, region=region, plan=plan
        )
        return [row[0] for row in conn.execute(sql, params)]

    def _complete(self, conn: sqlite3.Connection) -> bool:
        """Whether every index and trigger of the schema is there: not while a bulk load
        into an empty store has them dropped (``bulk_load``). Looked up again only when the
        schema changed."""
        version: int = conn.execute("PRAGMA schema_version").fetchone()[0]
        known = self._structures
        if known is None or known[0] != version:
            present = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('index', 'trigger')"
                )
            }
            known = self._structures = (version, present >= DERIVED.keys())
        return known[1]

    def _remembered(self, key: tuple[Any, ...], figure: Callable[[], float]) -> float:
        """A plan's figure (a bounded count, the blocks' overlap), remembered per generation
        of the data in ``key``: a stale one only makes a plan slower, never an answer
        different."""
        found = self._counts.get(key)
        if found is None:
            found = figure()
            if len(self._counts) >= _REMEMBERED_COUNTS:
                self._counts.clear()
            self._counts[key] = found
        return found

    def upsert(self, ccid: str, recordings: Sequence[Document]) -> list[Document | GWSError]:
        with self._write() as conn:
            saved = self._save(conn, ccid, recordings)
        return [r if isinstance(r, GWSError) else r.doc for r in saved]

    def load(self, ccid: str, recordings: Sequence[Document | Stored]) -> list[GWSError | None]:
        with self._load_write(len(recordings)) as conn:
            saved = self._save(conn, ccid, recordings)
        return [r if isinstance(r, GWSError) else None for r in saved]

    def _save(
        self, conn: sqlite3.Connection, ccid: str, recordings: Sequence[Document | Stored]
    ) -> list[Stored | GWSError]:
        prepared = [r for r in recordings if isinstance(r, Stored)]
        insert_first = self._all_new and len(prepared) == len(recordings)
        if not insert_first and self._loading and not sqliterows.has_ids_index(conn):
            # A merge looks its ids up: without their index, in the whole table each time. A
            # load into an empty store, which dropped it, builds it now, once.
            sqliterows.index_ids(conn)
        # New recordings get the pks SQLite would give them (the write lock is held), so that
        # they are inserted in one statement.
        next_pk = conn.execute("SELECT coalesce(max(pk), 0) + 1 FROM recordings").fetchone()[0]
        if insert_first:
            written = self._insert_new(conn, ccid, prepared, next_pk)
            if written is not None:
                return written
        return self._merge_in(conn, ccid, recordings, next_pk)

    def _insert_new(
        self, conn: sqlite3.Connection, ccid: str, recordings: Sequence[Stored], next_pk: int
    ) -> list[Stored | GWSError] | None:
        """An import's common case: recordings prepared ahead, none of them stored yet nor
        twice in the batch. They are inserted as they are, the unique index of ids finding
        any that is not new; then (None) the batch is undone, to be merged. In a load into an
        empty store that index is not there yet: a recording that comes again is inserted
        again, and merged when it is built (``sqliterows.index_ids``)."""
        written = dict(enumerate(recordings, next_pk))
        conn.execute("SAVEPOINT new_recordings")
        try:
            sqliterows.write_rows(conn, ccid, written, replaced=set())
        except sqlite3.IntegrityError:  # an id stored already, or twice in the batch
            conn.execute("ROLLBACK TO new_recordings")
            return None
        finally:
            conn.execute("RELEASE new_recordings")
        return list(recordings)

    def _merge_in(
        self,
        conn: sqlite3.Connection,
        ccid: str,
        recordings: Sequence[Document | Stored],
        next_pk: int,
    ) -> list[Stored | GWSError]:
        """Each recording merged with what is stored of it, or was saved earlier in the
        batch, then written."""
        results: list[Stored | GWSError] = []
        written: dict[int, Stored] = {}  # per pk, the recording as last merged in this batch
        # What is stored already, in one lookup; then the batch merges in memory, so a
        # recording posted twice in one batch merges with itself.
        ids = [item_id(r) for r in recordings]
        current: dict[str, tuple[int, bytes | Document | Stored]] = {
            rec_id: (pk, blob)
            for rec_id, pk, blob in conn.execute(
                "SELECT id, pk, doc FROM recordings WHERE ccid = ?"
                " AND id IN (SELECT value FROM json_each(?))",
                (ccid, orjson.dumps(ids)),
            )
        }
        replaced = {pk for pk, _ in current.values()}
        # Imports go on inserting without looking first while no batch needs a merge.
        self._all_new = not replaced and len(set(ids)) == len(ids)
        # In a bulk load the names' index by recording is dropped: a replaced recording's
        # entries are found by their whole key, made by this load from the same document.
        stored_keys: dict[int, IndexKeys] | None = {} if self._loading else None
        for rec_id, incoming in zip(ids, recordings, strict=True):
            pk, existing = current.get(rec_id, (next_pk, None))
            if isinstance(incoming, Stored) and unchanged(existing, incoming):
                results.append(incoming)
                continue
            if isinstance(existing, bytes):  # as stored, before any merge of this batch
                existing = decode(existing)
                if stored_keys is not None:
                    stored_keys[pk] = index_keys(existing)
            try:
                stored = merge_stored(existing, incoming)
            except GWSError as error:
                results.append(error)
                continue
            if pk == next_pk:
                next_pk += 1
            current[rec_id] = (pk, stored)
            written[pk] = stored
            results.append(stored)
        sqliterows.write_rows(conn, ccid, written, replaced, stored_keys)
        return results

    def delete(self, ccid: str, recording_id: str) -> Document | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT pk, doc FROM recordings WHERE ccid = ? AND id = ?", (ccid, recording_id)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM recording_names WHERE pk = ?", (row[0],))
            conn.execute("DELETE FROM recordings WHERE pk = ?", (row[0],))
        return decode(row[1])

    def iter_recordings(self, ccid: str | None = None) -> Iterator[tuple[str, Document]]:
        last = 0
        while True:
            rows = (
                self._read()
                .execute(
                    "SELECT pk, ccid, doc FROM recordings WHERE pk > ?"
                    " AND (? IS NULL OR ccid = ?) ORDER BY pk LIMIT 1000",
                    (last, ccid, ccid),
                )
                .fetchall()
            )
            if not rows:
                return
            for pk, row_ccid, blob in rows:
                last = pk
                yield row_ccid, decode(blob)

    # Users and keys

    def peek_user(self, name: str) -> User | None:
        return self.get_user(name)

    def get_user(self, name: str) -> User | None:
        row = self._point_read(
            "SELECT name, password_hash, role, ccid, first_name, last_name FROM users"
            " WHERE name = ?",
            (name,),
        )
        return User(*row) if row else None

    def list_users(self) -> list[User]:
        conn = self._read()
        rows = conn.execute(
            "SELECT name, password_hash, role, ccid, first_name, last_name FROM users ORDER BY name"
        ).fetchall()
        return [User(*row) for row in rows]

    def put_user(self, user: User) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO users (name, password_hash, role, ccid, first_name,"
                " last_name) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    user.name,
                    user.password_hash,
                    user.role,
                    user.ccid,
                    user.first_name,
                    user.last_name,
                ),
            )

    def delete_user(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def secret(self, name: str) -> bytes:
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                (f"secret:{name}", secrets.token_hex(32)),
            )
            value = conn.execute("SELECT value FROM meta WHERE key = ?", (f"secret:{name}",))
            return bytes.fromhex(value.fetchone()[0])

    def optimize(self) -> None:
        # A sampled ANALYZE: cheap at any size, and it lets the planner pick the caller or
        # dialed index over the time-ordered scan when the number is selective.
        with self._write() as conn:
            conn.execute("PRAGMA analysis_limit = 1000")
            conn.execute("ANALYZE")

    def ping(self) -> None:
        conn = self._read()
        conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._lock:
            self._writer.close()
        if self._commits is not None:
            self._commits.close()
