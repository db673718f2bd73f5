"""The PostgreSQL store's schema: its versioned migrations, safe when several processes start
at once, and the indexes a load into an empty database drops and builds again at the end
(``DEFERRED``, ``TRIGRAM_INDEXES``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from callrec.store import pgrows, pgwindows
from callrec.store.pgremember import CHANNEL, WRITER_FLAG
from callrec.store.pgsearch import STATISTICS_TARGET, name_bits_sql

log = logging.getLogger(__name__)
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
# Version 11: the ids' uniqueness kept by a named index instead of the table's primary key,
# so that a load into an empty database can build it at its end, beside the trigram indexes
# (a key's ALTER TABLE would lock them out), instead of keeping it up to date row by row: a
# load's ids land all over it. The names' index by recording goes with it.
IDS = "recordings_by_id"
# What logical replication identifies a row by, as it did the primary key. Dropping the index
# forgets it: set again each time the index is built.
_REPLICA_IDENTITY = f"ALTER TABLE recordings REPLICA IDENTITY USING INDEX {IDS}"
MIGRATIONS.append(
    (
        11,
        "the ids' uniqueness as an index (recordings_by_id) that a load into an empty database"
        " builds at its end",
        [
            "SET LOCAL maintenance_work_mem = '256MB'",
            f"CREATE UNIQUE INDEX {IDS} ON recordings (ccid, id)",
            "ALTER TABLE recordings DROP CONSTRAINT recordings_pkey",
            _REPLICA_IDENTITY,
        ],
    )
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
BY_ID = (IDS, "recording_names_by_recording")  # what finds a stored recording and its names
# Trigram indexes answer infix patterns (*4668*) where pg_trgm is installed or installable;
# with the time bucket as a second key (pgwindows).
TRIGRAM_INDEXES = pgwindows.INDEXES
# What a load's builds at its end put on a second connection (``PostgresStore._build_deferred``):
# about half of their time (at 2M recordings, alone: 39 of 81 s), none of it what has to wait
# for the repeats' merge (the ids' index, then the names' key).
BESIDE = frozenset(
    {
        *TRIGRAM_INDEXES,
        "recording_names_by_recording",
        "recordings_by_caller_start",
        "recordings_by_dialed_start",
    }
)
# What a load into an empty database builds once at the end instead of keeping it up to date
# (``bulk_load``): the indexes and keys the migrations create. The index of ids first, merging
# the load's repeats (``pgrows.merge_repeats``).


def _deferred_structures() -> dict[str, str]:
    found: dict[str, str] = {}
    for _, _, statements in MIGRATIONS:
        for statement in statements:
            words = [word for word in statement.split() if word != "UNIQUE"]
            if words[:2] == ["CREATE", "INDEX"]:
                found[words[2]] = statement
            elif words[:2] == ["DROP", "INDEX"]:
                found.pop(words[-1], None)
            elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "CONSTRAINT"]:
                found[words[5]] = statement
    return found


DEFERRED = _deferred_structures()  # name -> the DDL that builds it


def drop(name: str) -> str:
    """The statement that drops ``DEFERRED[name]`` or ``TRIGRAM_INDEXES[name]``, if present."""
    words = DEFERRED.get(name, "").split()
    if words[:2] == ["ALTER", "TABLE"]:
        return f"ALTER TABLE {words[2]} DROP CONSTRAINT IF EXISTS {name}"
    return f"DROP INDEX IF EXISTS {name}"


_MIGRATION_LOCK = 0x63616C6C726563  # any constant shared by every callrec process


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
            build_missing(conn)
    if version == SCHEMA_VERSION:
        identify_rows(conn)
    if rebuilt and conn.autocommit:
        vacuum(conn, "recording_names")
    return version


def missing(conn: psycopg.Connection[Any]) -> list[str]:
    """What a load into an empty database dropped (``bulk_load``) and a killed load never
    built again, and the trigram indexes where pg_trgm is at hand."""
    present = {
        name
        for (name,) in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        )
    }
    absent = [name for name in DEFERRED if name not in present]
    if _trigrams_available(conn):
        absent += [name for name in TRIGRAM_INDEXES if name not in present]
    return absent


def build(conn: psycopg.Connection[Any], names: Sequence[str]) -> None:
    """Build ``names`` (of ``DEFERRED`` and ``TRIGRAM_INDEXES``) in the caller's transaction."""
    if names:
        conn.execute("SET LOCAL statement_timeout = 0")  # millions of rows: minutes
        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")  # sorting for the builds
        ddl = {**DEFERRED, **TRIGRAM_INDEXES}
        for name in sorted(names, key=lambda name: name != IDS):
            if name == IDS:
                _build_ids(conn)
            else:
                conn.execute(ddl[name].encode())


def identify_rows(conn: psycopg.Connection[Any]) -> None:
    """Set what logical replication identifies a row by, where the index of ids was built
    and it is not set yet: in a transaction of its own (its lock is the table's strongest).
    Asked for in the transaction that built the index, which holds a weaker lock on the
    table already, it deadlocked with a writer between its read and its write, and the
    build was undone."""
    with conn.transaction():
        row = conn.execute(
            "SELECT x.indisreplident FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'recordings'::regclass AND i.relname = %s",
            (IDS,),
        ).fetchone()
        if row is not None and not row[0]:  # built, and not (or no longer) the identity
            conn.execute(_REPLICA_IDENTITY.encode())


def _build_ids(conn: psycopg.Connection[Any]) -> None:
    """The index of ids; where a load stored some recording more than once, after its rows
    are merged (``pgrows.merge_repeats``)."""
    try:
        with conn.transaction():
            conn.execute(DEFERRED[IDS].encode())
        return
    except psycopg.errors.UniqueViolation:
        pass
    merged = pgrows.merge_repeats(conn)
    log.info("%d rows of recordings stored more than once merged", merged)
    conn.execute(DEFERRED[IDS].encode())


def build_missing(conn: psycopg.Connection[Any]) -> None:
    """Build what is missing (``missing``) in the caller's transaction."""
    build(conn, missing(conn))


def vacuum(conn: psycopg.Connection[Any], table: str, *, analyze: bool = False) -> None:
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
