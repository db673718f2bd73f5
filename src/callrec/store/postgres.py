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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from callrec.doccodec import decode
from callrec.errors import DatabaseUnavailable, GWSError
from callrec.model import Stored, item_id, merge_stored
from callrec.query import RecordingQuery
from callrec.store import UNKNOWN, Document, SearchKey, Unknown, User, indexed_columns, pgwindows
from callrec.store.names import plan_names, signature
from callrec.store.pgloop import LoopReads
from callrec.store.pgremember import (
    CHANNEL,
    WRITER_FLAG,
    Remembered,
    changed_recordings,
    recording_key,
)
from callrec.store.pgsearch import (
    NO_STATS,
    STATISTICS_TARGET,
    expand,
    load_name_stats,
    name_bits_sql,
    needs_stats,
    search_names_sql,
)
from callrec.store.sqlsearch import POSTGRES, Plan, search_sql

T = TypeVar("T")
C = 'COLLATE "C"'  # byte order and exact matching, whatever the database's collation
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "recordings, names index, users, meta",
        [
            f"""CREATE TABLE recordings (
                ccid TEXT {C} NOT NULL,
                id TEXT {C} NOT NULL,
                region TEXT,
                start_ms BIGINT NOT NULL,
                stop_ms BIGINT,
                caller TEXT {C} NOT NULL,
                dialed TEXT {C} NOT NULL,
                doc TEXT NOT NULL,
                PRIMARY KEY (ccid, id)
            )""",
            "CREATE INDEX recordings_by_start ON recordings (ccid, start_ms, id)",
            "CREATE INDEX recordings_by_caller ON recordings (ccid, caller)",
            "CREATE INDEX recordings_by_dialed ON recordings (ccid, dialed)",
            f"""CREATE TABLE recording_names (
                ccid TEXT {C} NOT NULL,
                id TEXT {C} NOT NULL,
                name TEXT {C} NOT NULL,
                PRIMARY KEY (ccid, name, id)
            )""",
            "CREATE INDEX recording_names_by_recording ON recording_names (ccid, id)",
            """CREATE TABLE users (
                name TEXT PRIMARY KEY,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                ccid TEXT,
                first_name TEXT,
                last_name TEXT
            )""",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ],
    ),
    (
        2,
        "reversed numbers, so that suffix patterns use an index",
        [
            f"ALTER TABLE recordings ADD COLUMN caller_rev TEXT {C} NOT NULL DEFAULT ''",
            f"ALTER TABLE recordings ADD COLUMN dialed_rev TEXT {C} NOT NULL DEFAULT ''",
            "UPDATE recordings SET caller_rev = reverse(caller), dialed_rev = reverse(dialed)",
            "CREATE INDEX recordings_by_caller_rev ON recordings (ccid, caller_rev)",
            "CREATE INDEX recordings_by_dialed_rev ON recordings (ccid, dialed_rev)",
        ],
    ),
]
MIGRATIONS.append(
    (
        3,
        "no trigram index on names: equality lookups chose it over the B-tree",
        ["DROP INDEX IF EXISTS recording_names_name_trgm"],
    )
)
# Version 4: names keyed in search order. Columns of fixed width first, so that no row is
# padded; the primary key carries each recording's name signature (see pgsearch). Rows are
# written in time order, as later writes append them: an index-only scan of a name's range then
# reads the visibility map in order too.
MIGRATIONS.append(
    (
        4,
        "names keyed by (ccid, name, start_ms, id) with signatures; a dictionary of names",
        [
            # Hashing, sorting and index builds of the whole names table: memory to match.
            "SET LOCAL maintenance_work_mem = '256MB'",
            "SET LOCAL work_mem = '256MB'",
            "SET LOCAL enable_nestloop = off",  # it would probe recordings once per name
            f"""CREATE TABLE recording_names_v4 (
                start_ms BIGINT NOT NULL,
                sig BIGINT NOT NULL,
                ccid TEXT {C} NOT NULL,
                name TEXT {C} NOT NULL,
                id TEXT {C} NOT NULL
            )""",
            # MATERIALIZED: each distinct name hashed once, not once per row.
            f"""INSERT INTO recording_names_v4 (start_ms, sig, ccid, name, id)
            WITH bits AS MATERIALIZED (
                SELECT d.name, {name_bits_sql("d.name")} AS bits
                FROM (SELECT DISTINCT name FROM recording_names) AS d
            ), sigs AS (
                SELECT n.ccid, n.id, bit_or(b.bits) AS sig
                FROM recording_names n JOIN bits b ON b.name = n.name GROUP BY n.ccid, n.id
            )
            SELECT r.start_ms, s.sig, n.ccid, n.name, n.id
            FROM recording_names n
            JOIN recordings r ON r.ccid = n.ccid AND r.id = n.id
            JOIN sigs s ON s.ccid = n.ccid AND s.id = n.id
            ORDER BY r.start_ms""",
            "SET LOCAL enable_nestloop = on",
            "DROP TABLE recording_names",
            "ALTER TABLE recording_names_v4 RENAME TO recording_names",
            "ALTER TABLE recording_names ADD CONSTRAINT recording_names_pkey"
            " PRIMARY KEY (ccid, name, start_ms, id) INCLUDE (sig)",
            "CREATE INDEX recording_names_by_recording ON recording_names (ccid, id)",
            f"ALTER TABLE recording_names ALTER COLUMN name SET STATISTICS {STATISTICS_TARGET}",
            f"""CREATE TABLE name_dictionary (
                ccid TEXT {C} NOT NULL,
                name TEXT {C} NOT NULL,
                PRIMARY KEY (ccid, name)
            )""",
            "INSERT INTO name_dictionary (ccid, name)"
            " SELECT DISTINCT ccid, name FROM recording_names",
            "ANALYZE recording_names",
        ],
    )
)
MIGRATIONS.append(
    (
        5,
        "numbers indexed with the search order after them: an exact number's page is a range",
        [
            "SET LOCAL maintenance_work_mem = '256MB'",
            "CREATE INDEX recordings_by_caller_start ON recordings (ccid, caller, start_ms, id)",
            "CREATE INDEX recordings_by_dialed_start ON recordings (ccid, dialed, start_ms, id)",
            "DROP INDEX recordings_by_caller",
            "DROP INDEX recordings_by_dialed",
        ],
    )
)
MIGRATIONS.append(
    (
        6,
        "reversed numbers indexed with the search order after them: a suffix's matches are"
        " sorted from the index alone",
        [
            "SET LOCAL maintenance_work_mem = '256MB'",
            "CREATE INDEX recordings_by_caller_rev_start"
            " ON recordings (ccid, caller_rev, start_ms, id)",
            "CREATE INDEX recordings_by_dialed_rev_start"
            " ON recordings (ccid, dialed_rev, start_ms, id)",
            "DROP INDEX recordings_by_caller_rev",
            "DROP INDEX recordings_by_dialed_rev",
        ],
    )
)
MIGRATIONS.append(
    (
        7,
        "documents compressed (doccodec): bytes in a column of a new name",
        [
            "SET LOCAL maintenance_work_mem = '256MB'",
            # Rewrites the table and its indexes; the documents already stored stay plain
            # JSON (as bytes), which reads tell from compressed ones.
            "ALTER TABLE recordings ALTER COLUMN doc TYPE bytea USING convert_to(doc, 'UTF8')",
            # Nodes of the previous version still running fail on every statement about
            # documents, rather than write text where bytes are read (COPY would take the
            # JSON as bytea's escape syntax: "\\" would become one backslash).
            "ALTER TABLE recordings RENAME COLUMN doc TO document",
        ],
    )
)
MIGRATIONS.append(
    (
        8,
        "trigram indexes with the time bucket as a second key, and a finer histogram of"
        " start_ms: an infix pattern's candidates are read one window of time at a time"
        " (pgwindows)",
        [
            # Built again (with the bucket) where pg_trgm is at hand, as every trigram index.
            "DROP INDEX IF EXISTS recordings_caller_trgm",
            "DROP INDEX IF EXISTS recordings_dialed_trgm",
            f"ALTER TABLE recordings ALTER COLUMN start_ms SET STATISTICS {pgwindows.STATISTICS}",
            "ANALYZE recordings",
        ],
    )
)
MIGRATIONS.append(
    (
        9,
        "every change to recordings and users sends NOTIFY, whoever makes it (pgremember)",
        [
            "CREATE OR REPLACE FUNCTION callrec_changed() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END$$",
            *(
                f"CREATE TRIGGER {table}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
                f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION callrec_changed()"
                for table in ("recordings", "users")
            ),
        ],
    )
)
MIGRATIONS.append(
    (
        10,
        "a change of recordings whose NOTIFY names them sends no other",
        [
            "CREATE OR REPLACE FUNCTION callrec_changed() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN"
            f" IF TG_TABLE_NAME <> 'recordings' OR TG_OP = 'TRUNCATE'"
            f" OR current_setting('{WRITER_FLAG}', true) IS DISTINCT FROM 'on' THEN"
            f" PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); END IF; RETURN NULL; END$$",
        ],
    )
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Trigram indexes answer infix patterns (*4668*) where pg_trgm is installed or installable;
# with the time bucket as a second key (pgwindows).
TRIGRAM_INDEXES = pgwindows.INDEXES
# What a load into an empty database builds once at the end instead of keeping it up to date
# (``bulk_load``): the indexes and keys the migrations create, but for the two that writes use
# themselves (recordings by id, inline in the table's definition: each batch looks its ids
# up; names by recording: a recording posted again replaces its names through it).
KEPT = {"recording_names_by_recording"}


def _deferred_structures() -> dict[str, str]:
    found: dict[str, str] = {}
    for _, _, statements in MIGRATIONS:
        for statement in statements:
            words = statement.split()
            if words[:2] == ["CREATE", "INDEX"]:
                found[words[2]] = statement
            elif words[:2] == ["DROP", "INDEX"]:
                found.pop(words[-1], None)
            elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "CONSTRAINT"]:
                found[words[5]] = statement
    return {name: ddl for name, ddl in found.items() if name not in KEPT}


DEFERRED = _deferred_structures()  # name -> the DDL that builds it


def _drop(name: str) -> str:
    """The statement that drops ``DEFERRED[name]`` or ``TRIGRAM_INDEXES[name]``, if present."""
    words = DEFERRED.get(name, "").split()
    if words[:2] == ["ALTER", "TABLE"]:
        return f"ALTER TABLE {words[2]} DROP CONSTRAINT IF EXISTS {name}"
    return f"DROP INDEX IF EXISTS {name}"


STATS_SECONDS = 300.0  # how long the names' statistics are used before they are read again
_MIGRATION_LOCK = 0x63616C6C726563  # any constant shared by every callrec process


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def migrate(conn: psycopg.Connection[Any], target: int = SCHEMA_VERSION) -> int:
    """Bring the schema up to ``target``; safe when several processes start at once."""
    with conn.transaction():
        # A migration may rebuild a table of millions of rows: longer than any query may take.
        # Processes starting meanwhile wait for it on the lock, rather than fail.
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        version: int = (row[0] if row else None) or 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {version} is newer than this callrec "
                f"({SCHEMA_VERSION}); upgrade callrec"
            )
        rebuilt = version < 4 <= target  # recording_names, rewritten by migration 4
        for number, description, statements in MIGRATIONS:
            if version < number <= target:
                for statement in statements:
                    conn.execute(statement.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (number, description),
                )
                version = number
        if version == SCHEMA_VERSION:
            _build_missing(conn)
    if rebuilt and conn.autocommit:
        _vacuum(conn, "recording_names")
    return version


def _missing(conn: psycopg.Connection[Any]) -> list[str]:
    """What a load into an empty database dropped (``bulk_load``) and a killed load never
    built again, and the trigram indexes where pg_trgm is at hand."""
    present = {
        name
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        )
    }
    missing = [name for name in DEFERRED if name not in present]
    if _trigrams_available(conn):
        missing += [name for name in TRIGRAM_INDEXES if name not in present]
    return missing


def _build(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
    """Build ``names`` (of ``DEFERRED`` and ``TRIGRAM_INDEXES``) in the caller's transaction."""
    if names:
        conn.execute("SET LOCAL statement_timeout = 0")  # millions of rows: minutes
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")  # sorting for the builds
        ddl = {**DEFERRED, **TRIGRAM_INDEXES}
        for name in names:
            conn.execute(ddl[name].encode())


def _build_missing(conn: psycopg.Connection[Any]) -> None:
    """Build what is missing (``_missing``) in the caller's transaction."""
    _build(conn, _missing(conn))


def _vacuum(conn: psycopg.Connection[Any], table: str, *, analyze: bool = False) -> None:
    """Mark a rebuilt or bulk-loaded table's pages all-visible at once: until then, index-only
    scans (the names index, a number's range) visit the table too, and autovacuum gets there
    late. Millions of rows take longer than any query may: no statement timeout here."""
    row = conn.execute("SHOW statement_timeout").fetchone()
    conn.execute("SET statement_timeout = 0")
    try:
        conn.execute(f"VACUUM {'(ANALYZE) ' if analyze else ''}{table}".encode())
    finally:
        if row is not None:
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(row[0])))


def _trigrams_available(conn: psycopg.Connection[Any]) -> bool:
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.Error:
        pass  # not installable here: infix patterns scan the number column instead
    row = conn.execute(
        "SELECT count(*) FROM pg_opclass WHERE opcname = 'gin_trgm_ops'"
        " AND pg_opclass_is_visible(oid)"
    ).fetchone()
    return bool(row and row[0])


_IDLE_CHECK_SECONDS = 1.0
_returned_at: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
    weakref.WeakKeyDictionary()
)


def _returned(conn: psycopg.Connection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


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


_RECORDING_TYPES = ["text", "text", "text", "int8", "int8", "text", "text", "text", "text", "bytea"]
_NAME_TYPES = ["int8", "int8", "text", "text", "text"]


def _columns(ccid: str, row: Stored) -> tuple[Any, ...]:
    """A recording's row in ``recordings``, in the order of its columns."""
    return (ccid, row.keys.id, *indexed_columns(row.keys), row.packed)


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


class PostgresStore:
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
            raise ConnectionError(
                f"PostgreSQL did not answer within {timeout:g} s (CALLREC_DATABASE_URL)"
            ) from None
        self._statistics_read: dict[Callable[[Any], Any], tuple[float, Any]] = {}
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

    def search(
        self,
        ccid: str,
        query: RecordingQuery,
        *,
        limit: int,
        after: SearchKey | None = None,
        region: str | None = None,
    ) -> list[Document]:
        with self._conn() as conn:
            times = None if query.user else self._statistics(conn, pgwindows.load_time_stats)
            if times is not None and times.worth_it and pgwindows.by_windows(conn, ccid, query):
                blobs = pgwindows.read_page(
                    conn, times, ccid, query, limit=limit, after=after, region=region
                )
            else:
                blobs = self._read_page(conn, ccid, query, limit, after, region)
        return [decode(blob) for blob in blobs]

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
        given = [item_id(r) for r in recordings]
        ids = sorted(set(given))
        results: list[Stored | GWSError] = []
        with self._writing(ccid, ids) as conn:
            # One lock per recording, taken in a fixed order: concurrent merges of the same
            # recording from any process run one after the other, and never deadlock.
            conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT"
                " hashtextextended(%s || '/' || x, 0) AS k FROM unnest(%b::text[]) AS x"
                " ORDER BY k) AS s",
                (ccid, ids),
            )
            # The lookups and replacements by id below probe their indexes, whatever the
            # planner estimates: on a table of 600,000 recordings it rated a parallel scan
            # of it cheaper than 8,000 probes, and took 140 ms where the probes take 26.
            conn.execute("SET LOCAL enable_seqscan = off")
            current: dict[str, Document | Stored] = {
                rec_id: decode(doc)
                for rec_id, doc in conn.execute(
                    "SELECT id, document FROM recordings WHERE ccid = %s AND id = ANY(%b)",
                    (ccid, ids),
                )
            }
            stored_before = set(current)
            changed: dict[str, Stored] = {}
            for rec_id, incoming in zip(given, recordings, strict=True):
                try:
                    stored = merge_stored(current.get(rec_id), incoming)
                except GWSError as error:
                    results.append(error)
                    continue
                current[rec_id] = changed[rec_id] = stored
                results.append(stored)
            if changed:
                self._write(conn, ccid, list(changed.values()), stored_before)
        return results

    def _write(
        self, conn: psycopg.Connection[Any], ccid: str, rows: list[Stored], stored: set[str]
    ) -> None:
        """Write the recordings and their names. Those not ``stored`` before are new (their
        locks are held: no other writer can have added them since) and are copied in."""
        names = []
        for row in rows:
            keys = row.keys
            sig = signature(keys.names)
            names += [(keys.start_ms, sig, ccid, name, keys.id) for name in keys.names]
        fresh = [row for row in rows if row.keys.id not in stored]
        replaced = [row for row in rows if row.keys.id in stored]
        with conn.cursor() as cur:
            # Binary COPY: a document crosses as its bytes, not as twice as many hex digits
            # for both ends to convert.
            if fresh:
                with cur.copy(
                    "COPY recordings (ccid, id, region, start_ms, stop_ms, caller, dialed,"
                    " caller_rev, dialed_rev, document) FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(_RECORDING_TYPES)
                    for row in fresh:
                        copy.write_row(_columns(ccid, row))
            if replaced:
                cur.executemany(
                    "UPDATE recordings SET region = %s, start_ms = %s, stop_ms = %s,"
                    " caller = %s, dialed = %s, caller_rev = %s, dialed_rev = %s, document = %s"
                    " WHERE ccid = %s AND id = %s",
                    [(*_columns(ccid, row)[2:], ccid, row.keys.id) for row in replaced],
                )
                cur.execute(
                    "DELETE FROM recording_names WHERE ccid = %s AND id = ANY(%b)",
                    (ccid, [row.keys.id for row in replaced]),
                )
            with cur.copy(
                "COPY recording_names (start_ms, sig, ccid, name, id) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(_NAME_TYPES)
                for name_row in names:
                    copy.write_row(name_row)
            # Every name indexed is in the dictionary that wildcards expand through. In sorted
            # order, so that two writers adding the same new names never deadlock.
            cur.execute(
                "INSERT INTO name_dictionary (ccid, name) SELECT %s, x"
                " FROM unnest(%b::text[]) AS x ORDER BY x ON CONFLICT DO NOTHING",
                (ccid, sorted({row[3] for row in names})),
            )

    @contextmanager
    def bulk_load(self) -> Iterator[bool]:
        """Into an empty database the secondary indexes (``DEFERRED``, the trigram indexes)
        are dropped and built once at the end: cheaper than keeping them up to date row by
        row, and the indexes come out packed instead of split half-full. Searches from other
        processes meanwhile scan the table. A database with recordings keeps its indexes."""
        with self._writing() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # waits for running searches
            row = conn.execute("SELECT NOT EXISTS (SELECT FROM recordings)").fetchone()
            empty = bool(row and row[0])
            if empty:
                for name in (*DEFERRED, *TRIGRAM_INDEXES):
                    conn.execute(_drop(name).encode())
        try:
            yield empty
        finally:
            self._build_deferred()

    def _build_deferred(self) -> None:
        """Build what is missing on two connections at once: the trigram indexes (GIN: a
        build takes one core) on one, the B-tree indexes and keys (whose builds have workers
        of their own) on the other: 0.75-0.81x the time of one after the other at 600,000
        and 2,000,000 recordings. Each connection commits its own: a build that fails or is
        killed leaves the rest built, and the next start builds it again (``migrate``); a
        build that fails stops the other. With a pool of one connection, one after the
        other."""
        with self._conn() as conn:
            missing = _missing(conn)
        trigrams = [name for name in missing if name in TRIGRAM_INDEXES]
        others = [name for name in missing if name not in TRIGRAM_INDEXES]

        stopped = threading.Event()  # the other build failed: start none
        beside_conn: list[psycopg.Connection[Any]] = []  # the one building beside, once it is

        def build(names: Sequence[str], *, beside: bool = False) -> None:
            with self._conn() as conn, conn.transaction():
                if beside:
                    beside_conn.append(conn)
                if not stopped.is_set():
                    _build(conn, names)

        try:
            if trigrams and others and self._pool.max_size > 1:
                with ThreadPoolExecutor(1) as side:
                    trigram_builds = side.submit(build, trigrams, beside=True)
                    try:
                        build(others)
                    except BaseException:  # Ctrl-C included: the other build stops too
                        stopped.set()
                        if beside_conn and not trigram_builds.done():
                            beside_conn[0].cancel_safe()
                        raise
                    trigram_builds.result()
            else:
                build(missing)
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
                _vacuum(conn, table, analyze=True)
        self._statistics_read.clear()  # read them again

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._remembered.close()
        self._loop_reads.close()
        self._pool.close()
