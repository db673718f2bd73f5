"""The PostgreSQL store: several stateless callrec processes over one database.

psycopg 3 with a connection pool. Every operation is bounded by ``CALLREC_DATABASE_TIMEOUT``
(pool wait, connect and statement time), and a lost database turns into statusCode 4 rather
than a hung request; the pool replaces broken connections, so service resumes by itself when
the database returns. Merges of the same recording from several processes are serialised by a
transaction-scoped advisory lock per recording, so none loses a media file or an event.

The schema is ready for a distributed PostgreSQL (e.g. Citus with ``ccid`` as the
distribution column): every key and every join includes ``ccid``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from callrec.doccodec import decode
from callrec.errors import DatabaseUnavailable, GWSError
from callrec.model import Stored, item_id, merge_stored, unchanged
from callrec.query import RecordingQuery
from callrec.store import (
    UNKNOWN,
    Document,
    DocumentSearch,
    SearchKey,
    Unknown,
    User,
    pgrows,
    pgschema,
    pgwindows,
)
from callrec.store.names import plan_names
from callrec.store.pgloop import LoopReads
from callrec.store.pgremember import Remembered, changed_recordings, recording_key
from callrec.store.pgschema import BESIDE, BY_ID, DEFERRED, TRIGRAM_INDEXES, migrate
from callrec.store.pgsearch import NO_STATS, expand, load_name_stats, needs_stats, search_names_sql
from callrec.store.sqlsearch import POSTGRES, Plan, search_sql

T = TypeVar("T")


STATS_SECONDS = 300.0  # how long the names' statistics are used before they are read again


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_IDLE_CHECK_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
    weakref.WeakKeyDictionary()
)


def _returned(conn: psycopg.Connection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


def _no_connection(url: str, timeout: float) -> str:
    """Why no connection could be opened, in one line: what the server refused (no such
    database or role, a password) when it answered, else that it did not. libpq's messages
    name the host, port, database and user, never the password."""
    reason = f"did not answer within {timeout:g} s"
    try:  # libpq's shortest wait: a server that answers at all does so by then
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError as error:
        refused = str(error).partition("FATAL:")[2].strip()
        reason = f"refused the connection: {' '.join(refused.split())}" if refused else reason
    return f"PostgreSQL {reason} (CALLREC_DATABASE_URL)"


def _check_if_idle(conn: psycopg.Connection[Any]) -> None:
    """Check a pooled connection (a round trip) before use only when it has been idle: one
    that worked within the last second is used as it is, and if the database restarted in
    that second, the request fails once and the broken connection is dropped."""
    if time.monotonic() - _returned_at.get(conn, 0.0) > _IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


_RECORDING = "SELECT document, region FROM recordings WHERE ccid = %s AND id = %s"


def _stored(row: tuple[bytes, str | None] | None, region: str | None) -> bytes | None:
    if row is None or (region is not None and row[1] != region):
        return None
    return row[0]


_KEYS_FIRST = dataclasses.replace(POSTGRES, keys_first=True)


def _load_size(conn: psycopg.Connection[Any]) -> int:
    """Recordings per import transaction: 8,000 (as many as a batch of lines), fewer when
    the server's lock table could not hold a lock for each. It holds about
    ``max_locks_per_transaction`` x (``max_connections`` + ``max_prepared_transactions``)
    locks, shared by every session: 32,000 advisory locks in one transaction ran a default
    server (64 x 100) out of shared memory."""
    row = conn.execute(
        "SELECT current_setting('max_locks_per_transaction')::int"
        " * (current_setting('max_connections')::int"
        " + current_setting('max_prepared_transactions')::int)"
    ).fetchone()
    return max(500, min(8000, int(row[0]) // 2 if row else 500))


class PostgresStore(DocumentSearch):
    """``RecordingStore`` over PostgreSQL."""

    # A point read is a network round trip that can stall with the database: it never
    # blocks the event loop. It is remembered (``pgremember``), made in a worker thread, or
    # awaited on the event loop's own connection under a timeout (``pgloop``).

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 5.0) -> None:
        session = (  # every connection's settings: the pool's and the event loop's
            f"SET statement_timeout = {max(1, int(timeout * 1000))}",
            # Compiling a query costs milliseconds, more than any of ours runs; plans whose
            # estimate is high but that stop early (a page of a common name) would pay it.
            "SET jit = off",
        )

        def configure(conn: psycopg.Connection[Any]) -> None:
            for statement in session:
                conn.execute(statement)

        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
            kwargs={"autocommit": True, "connect_timeout": max(2, int(timeout))},
            configure=configure,
            check=_check_if_idle,
            reset=_returned,
            # Give up on a failing connection attempt after the timeout, rather than backing
            # off for minutes: the next request tries afresh, so service resumes as soon as
            # the database is back.
            reconnect_timeout=timeout,
            name="callrec",
        )
        try:
            with _quiet("psycopg.pool"):  # the caller reports a failure in one line
                self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self._pool.close()
            raise ConnectionError(_no_connection(url, timeout)) from None
        self._statistics_read: dict[Callable[[Any], Any], tuple[float, Any]] = {}
        self._without_ids = False  # in a load into an empty database, before the ids' index
        self._remembered = Remembered(url, max(2, int(timeout)))
        self._loop_reads = LoopReads(url, timeout, session)
        try:
            with self._pool.connection() as conn:
                self.schema_version = migrate(conn)
                self.load_size = _load_size(conn)
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def _writing(
        self, ccid: str | None = None, ids: Sequence[str] = ()
    ) -> Iterator[psycopg.Connection[Any]]:
        """A write transaction; remembered rows are forgotten once it is over (at once in
        this process, by NOTIFY in the others): ``ccid``'s recordings ``ids`` when it changes
        no others, else every row."""
        try:
            with self._conn() as conn, conn.transaction():
                if ccid is not None:
                    changed_recordings(conn, ccid, ids)
                yield conn
        finally:
            self._remembered.forget(
                None if ccid is None else [recording_key(ccid, rec_id) for rec_id in ids]
            )

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise DatabaseUnavailable() from error

    # Recordings

    def get(self, ccid: str, recording_id: str, region: str | None = None) -> Document | None:
        def load() -> tuple[bytes, str | None] | None:
            with self._conn() as conn:
                return conn.execute(_RECORDING, (ccid, recording_id)).fetchone()

        stored = _stored(self._remembered.read(recording_key(ccid, recording_id), load), region)
        return None if stored is None else decode(stored)

    async def fetch_stored(
        self, ccid: str, recording_id: str, region: str | None = None
    ) -> bytes | None:
        row = await self._remembered.aread(
            recording_key(ccid, recording_id),
            lambda: self._loop_reads.fetchone(_RECORDING, (ccid, recording_id)),
        )
        return _stored(row, region)

    def peek_stored(
        self, ccid: str, recording_id: str, region: str | None = None
    ) -> bytes | Unknown | None:
        row = self._remembered.peek(recording_key(ccid, recording_id))
        return row if row is UNKNOWN else _stored(row, region)

    def search_stored(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[bytes]:
        with self._conn() as conn:
            times = None if query.user else self._statistics(conn, pgwindows.load_time_stats)
            if times is not None and times.worth_it and pgwindows.by_windows(conn, ccid, query):
                return pgwindows.read_page(
                    conn, times, ccid, query, limit=limit, after=after, region=region
                )
            return self._read_page(conn, ccid, query, limit, after, region)

    def _read_page(
        self,
        conn: psycopg.Connection[Any],
        ccid: str,
        query: RecordingQuery,
        limit: int,
        after: SearchKey | None,
        region: str | None,
    ) -> list[bytes]:
        """The stored documents of one page, by one statement."""
        statement = self._search_statement(conn, ccid, query, limit, after, region)
        if statement is None:
            return []
        sql, params, prepare = statement
        text = sql.replace("?", "%s").encode()
        if prepare is not True:
            return [row[0] for row in conn.execute(text, params, prepare=prepare)]
        # Planned once per connection: PostgreSQL would otherwise plan each of a statement's
        # first five runs for its values (merging 50 names' ranges: 5 ms each).
        with conn.transaction():
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            return [row[0] for row in conn.execute(text, params, prepare=True)]

    def _search_statement(
        self,
        conn: psycopg.Connection[Any],
        ccid: str,
        query: RecordingQuery,
        limit: int,
        after: SearchKey | None,
        region: str | None,
    ) -> tuple[str, list[Any], bool | None] | None:
        """The SQL of one page, its parameters and whether to prepare it (None: psycopg's
        default, prepared once used five times); None when nothing can match."""
        # PostgreSQL's own planner, with its statistics, picks between the time-ordered walk
        # and index lookups; the bounded counts that steer SQLite cost more here than they
        # save (measured at 1M recordings). Numbers and names are planned for the values at
        # hand: once psycopg prepares a statement, PostgreSQL may settle on a generic plan
        # blind to how common the value is (a frequent caller read from its index: 100+ ms
        # instead of about 1 at 1M recordings).
        if not query.user:
            # A pattern's matches collected from an index are sorted by their keys alone, and
            # only the page's documents are read (a prefix of 15,000 matches at 10M: 50 ms
            # reading them all, 7 ms so); exact numbers and windows are cheaper read at once.
            wild = any("*" in (p or "") for p in (query.caller, query.dialed))
            dialect = _KEYS_FIRST if wild else POSTGRES
            sql, params = search_sql(dialect, ccid, query, limit=limit, after=after, region=region)
            by_value = query.caller is not None or query.dialed is not None
            return sql, params, False if by_value else None
        # userName: ordered ranges of the names index (pgsearch).
        expanded = expand(conn, ccid, query.user)
        stats = (
            self._statistics(conn, load_name_stats)
            if needs_stats(query.user, expanded)
            else NO_STATS
        )
        names = plan_names(query.user, expanded, stats, limit)
        if names.branches is None:  # wildcards standing for too many names
            plan = Plan(dense_names=names.dense)
            sql, params = search_sql(
                POSTGRES, ccid, query, limit=limit, after=after, region=region, plan=plan
            )
            return sql, params, False
        if not names.branches:
            return None  # in every group, some term matches no name
        sql, params, keys_only = search_names_sql(
            ccid, query, names.branches, limit=limit, after=after, region=region
        )
        # Ranges of the names index alone plan the same whatever the names: prepared at once
        # (merging many branches takes milliseconds to plan).
        return sql, params, keys_only

    def _statistics(self, conn: psycopg.Connection[Any], load: Callable[[Any], T]) -> T:
        """PostgreSQL's statistics as ``load`` reads them (of names, of start_ms), read
        again at most every STATS_SECONDS."""
        now = time.monotonic()
        cached = self._statistics_read.get(load)
        if cached is None or now - cached[0] > STATS_SECONDS:
            cached = self._statistics_read[load] = (now, load(conn))
        value: T = cached[1]
        return value

    def upsert(self, ccid: str, recordings: Sequence[Document]) -> list[Document | GWSError]:
        return [r if isinstance(r, GWSError) else r.doc for r in self._save(ccid, recordings)]

    def load(self, ccid: str, recordings: Sequence[Document | Stored]) -> list[GWSError | None]:
        return [r if isinstance(r, GWSError) else None for r in self._save(ccid, recordings)]

    def _save(self, ccid: str, recordings: Sequence[Document | Stored]) -> list[Stored | GWSError]:
        if not recordings:
            return []
        # In a load into an empty database, recordings prepared ahead are inserted without
        # looking for them (there is no index of ids to look in), a recording that comes
        # again with the others: merged when the index is built at the end. Any other
        # recording merges with what is stored of it: the index is built now, once.
        unlooked = self._without_ids and all(isinstance(r, Stored) for r in recordings)
        if self._without_ids and not unlooked:
            self._index_ids()
        if unlooked:
            try:
                return self._merge_in(ccid, recordings, look_up=False)
            except psycopg.errors.UniqueViolation:
                # Another process built the index meanwhile (a server that started, which
                # builds what is missing), and a recording of the batch was stored already.
                self._without_ids = False
        return self._merge_in(ccid, recordings, look_up=True)

    def _merge_in(
        self, ccid: str, recordings: Sequence[Document | Stored], *, look_up: bool
    ) -> list[Stored | GWSError]:
        """Each recording merged with what is stored of it (``look_up``), or was saved
        earlier in the batch, then written."""
        given = [item_id(r) for r in recordings]
        ids = sorted(set(given))
        results: list[Stored | GWSError] = []
        with self._writing(ccid, ids) as conn:
            current: dict[str, bytes | Document | Stored] = {}
            if look_up:
                current.update(self._look_up(conn, ccid, ids))
            stored_before = set(current)
            changed: dict[str, Stored] = {}
            for rec_id, incoming in zip(given, recordings, strict=True):
                existing = current.get(rec_id)
                if isinstance(incoming, Stored) and unchanged(existing, incoming):
                    results.append(incoming)
                    continue
                try:
                    stored = merge_stored(
                        decode(existing) if isinstance(existing, bytes) else existing, incoming
                    )
                except GWSError as error:
                    results.append(error)
                    continue
                current[rec_id] = changed[rec_id] = stored
                results.append(stored)
            if changed:
                pgrows.write_rows(conn, ccid, list(changed.values()), stored_before)
        return results

    @staticmethod
    def _look_up(
        conn: psycopg.Connection[Any], ccid: str, ids: list[str]
    ) -> dict[str, bytes | Stored]:
        """The stored forms of ``ccid``'s recordings ``ids``, locked for the transaction."""
        # One lock per recording, taken in a fixed order: concurrent merges of the same
        # recording from any process run one after the other, and never deadlock.
        conn.execute(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT"
            " hashtextextended(%s || '/' || x, 0) AS k FROM unnest(%b::text[]) AS x"
            " ORDER BY k) AS s",
            (ccid, ids),
        )
        # The lookups and replacements by id probe their indexes, whatever the planner
        # estimates: on a table of 600,000 recordings it rated a parallel scan of it cheaper
        # than 8,000 probes, and took 140 ms where the probes take 26.
        conn.execute("SET LOCAL enable_seqscan = off")
        found = conn.execute(
            "SELECT id, document FROM recordings WHERE ccid = %s AND id = ANY(%b)", (ccid, ids)
        ).fetchall()
        current: dict[str, bytes | Stored] = dict(found)
        if len(current) < len(found):  # a load's row, and one written beside it (``merged_rows``)
            counted = Counter(rec_id for rec_id, _ in found)
            current.update(pgrows.merged_rows(conn, ccid, [i for i, n in counted.items() if n > 1]))
        return current

    def _index_ids(self) -> None:
        """Build what looks recordings up by id, in a load that dropped it."""
        with self._conn() as conn:
            with conn.transaction():
                pgschema.build(conn, [name for name in pgschema.missing(conn) if name in BY_ID])
            pgschema.identify_rows(conn)
        self._without_ids = False

    @contextmanager
    def bulk_load(self) -> Iterator[bool]:
        """Into an empty database the indexes (``DEFERRED``, the trigram indexes) are dropped
        and built once at the end: cheaper than keeping them up to date row by row, and the
        indexes come out packed instead of split half-full. The index of ids included: the
        load inserts without looking its recordings up, and a recording stored more than
        once is merged when it is built (``_save``, ``pgrows.merge_repeats``). Searches and
        reads and writes by id from other processes meanwhile scan the table. A database
        with recordings keeps its indexes."""
        with self._writing() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # waits for running searches
            row = conn.execute("SELECT NOT EXISTS (SELECT FROM recordings)").fetchone()
            empty = bool(row and row[0])
            if empty:
                for name in (*DEFERRED, *TRIGRAM_INDEXES):
                    conn.execute(pgschema.drop(name).encode())
        self._without_ids = empty
        try:
            yield empty
        finally:
            self._without_ids = False
            self._build_deferred()

    def _build_deferred(self) -> None:
        """Build what is missing on two connections at once, about half on each
        (``pgschema.BESIDE``): the trigram indexes (GIN: a build takes one core) and the
        indexes of recordings by id and by number beside the rest: 0.75-0.81x the time of
        one after the other at 600,000 and 2,000,000 recordings (trigram indexes beside).
        Each connection commits its own: a build that fails or is killed leaves the rest
        built, and the next start builds it again (``migrate``); a build that fails stops
        the other. With a pool of one connection, one after the other."""
        with self._conn() as conn:
            missing = pgschema.missing(conn)
        beside_names = [name for name in missing if name in BESIDE]
        others = [name for name in missing if name not in BESIDE]

        stopped = threading.Event()  # the other build failed: start none
        beside_conn: list[psycopg.Connection[Any]] = []  # the one building beside, once it is

        def build(names: Sequence[str], *, beside: bool = False) -> None:
            with self._conn() as conn, conn.transaction():
                if beside:
                    beside_conn.append(conn)
                if not stopped.is_set():
                    pgschema.build(conn, names)

        try:
            if beside_names and others and self._pool.max_size > 1:
                with ThreadPoolExecutor(1) as side:
                    beside_builds = side.submit(build, beside_names, beside=True)
                    try:
                        build(others)
                    except BaseException:  # Ctrl-C included: the other build stops too
                        stopped.set()
                        if beside_conn and not beside_builds.done():
                            beside_conn[0].cancel_safe()
                        raise
                    beside_builds.result()
            else:
                build(missing)
            with self._conn() as conn:
                pgschema.identify_rows(conn)
        finally:
            self._remembered.forget(None)

    def delete(self, ccid: str, recording_id: str) -> Document | None:
        with self._writing(ccid, [recording_id]) as conn:
            row = conn.execute(
                "DELETE FROM recordings WHERE ccid = %s AND id = %s RETURNING document",
                (ccid, recording_id),
            ).fetchone()
            conn.execute(
                "DELETE FROM recording_names WHERE ccid = %s AND id = %s", (ccid, recording_id)
            )
        if row is None:
            return None
        return decode(row[0])

    def iter_recordings(self, ccid: str | None = None) -> Iterator[tuple[str, Document]]:
        last = ("", "")
        while True:
            with self._conn() as conn:
                rows = conn.execute(
                    "SELECT ccid, id, document FROM recordings WHERE (ccid, id) > (%s, %s)"
                    " AND (%s::text IS NULL OR ccid = %s) ORDER BY ccid, id LIMIT 1000",
                    (*last, ccid, ccid),
                ).fetchall()
            if not rows:
                return
            for row_ccid, rec_id, doc in rows:
                last = (row_ccid, rec_id)
                yield row_ccid, decode(doc)

    # Users and keys

    def get_user(self, name: str) -> User | None:
        def load() -> User | None:
            with self._conn() as conn:
                row = conn.execute(
                    "SELECT name, password_hash, role, ccid, first_name, last_name FROM users"
                    " WHERE name = %s",
                    (name,),
                ).fetchone()
            return User(*row) if row else None

        user: User | None = self._remembered.read(("u", name), load)
        return user

    def peek_user(self, name: str) -> User | Unknown | None:
        user: User | Unknown | None = self._remembered.peek(("u", name))
        return user

    def change_token(self) -> bytes | None:
        return self._remembered.token()

    def list_users(self) -> list[User]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT name, password_hash, role, ccid, first_name, last_name FROM users"
                " ORDER BY name"
            ).fetchall()
        return [User(*row) for row in rows]

    def put_user(self, user: User) -> None:
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO users (name, password_hash, role, ccid, first_name, last_name)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
                " password_hash = EXCLUDED.password_hash, role = EXCLUDED.role,"
                " ccid = EXCLUDED.ccid, first_name = EXCLUDED.first_name,"
                " last_name = EXCLUDED.last_name",
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
        with self._writing() as conn:
            return conn.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount > 0

    def secret(self, name: str) -> bytes:
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (f"secret:{name}", secrets.token_hex(32)),
            )
            row = conn.execute(
                "SELECT value FROM meta WHERE key = %s", (f"secret:{name}",)
            ).fetchone()
        assert row is not None
        return bytes.fromhex(row[0])

    def optimize(self) -> None:
        # An import ends with this: statistics, and the visibility map (at 10M recordings,
        # 44 s for both tables; a prefix's page read 14,942 table rows without it).
        with self._conn() as conn:
            for table in ("recordings", "recording_names"):
                pgschema.vacuum(conn, table, analyze=True)
        self._statistics_read.clear()  # read them again

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._remembered.close()
        self._loop_reads.close()
        self._pool.close()
