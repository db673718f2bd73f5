"""The SQLite store's schema: its versioned migrations, and the indexes and triggers a bulk
load drops and builds again at the end (``DERIVED``, ``build_steps``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from callrec.store.names import signature
from callrec.store.sqliteblocks import BLOCK_BITS

# Versioned schema: each entry upgrades the previous version; a new database runs them all.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "recordings, names index, users, meta",
        [
            """CREATE TABLE recordings (
                pk INTEGER PRIMARY KEY,
                ccid TEXT NOT NULL,
                id TEXT NOT NULL,
                region TEXT,
                start_ms INTEGER NOT NULL,
                stop_ms INTEGER,
                caller TEXT NOT NULL,
                dialed TEXT NOT NULL,
                doc BLOB NOT NULL,
                UNIQUE (ccid, id)
            )""",
            "CREATE INDEX recordings_by_start ON recordings (ccid, start_ms, id)",
            "CREATE INDEX recordings_by_caller ON recordings (ccid, caller)",
            "CREATE INDEX recordings_by_dialed ON recordings (ccid, dialed)",
            """CREATE TABLE recording_names (
                name TEXT NOT NULL,
                pk INTEGER NOT NULL,
                PRIMARY KEY (name, pk)
            ) WITHOUT ROWID""",
            "CREATE INDEX recording_names_by_pk ON recording_names (pk)",
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
            "ALTER TABLE recordings ADD COLUMN caller_rev TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE recordings ADD COLUMN dialed_rev TEXT NOT NULL DEFAULT ''",
            "UPDATE recordings SET caller_rev = reversed(caller), dialed_rev = reversed(dialed)",
            "CREATE INDEX recordings_by_caller_rev ON recordings (ccid, caller_rev)",
            "CREATE INDEX recordings_by_dialed_rev ON recordings (ccid, dialed_rev)",
        ],
    ),
]
_FTS_ROW = "(rowid, caller, dialed) VALUES ({0}.pk, {0}.caller, {0}.dialed)"
_FTS_DELETE = (
    "(recordings_fts, rowid, caller, dialed) VALUES ('delete', old.pk, old.caller, old.dialed)"
)
MIGRATIONS.append(
    (
        3,
        "trigram index of the numbers, so that infix patterns (*4668*) need no scan",
        [
            "CREATE VIRTUAL TABLE recordings_fts USING fts5(caller, dialed, content='recordings',"
            " content_rowid='pk', tokenize='trigram')",
            "CREATE TRIGGER recordings_fts_insert AFTER INSERT ON recordings BEGIN"
            f" INSERT INTO recordings_fts {_FTS_ROW.format('new')}; END",
            "CREATE TRIGGER recordings_fts_delete AFTER DELETE ON recordings BEGIN"
            f" INSERT INTO recordings_fts {_FTS_DELETE}; END",
            "CREATE TRIGGER recordings_fts_update AFTER UPDATE OF caller, dialed ON recordings"
            f" BEGIN INSERT INTO recordings_fts {_FTS_DELETE};"
            f" INSERT INTO recordings_fts {_FTS_ROW.format('new')}; END",
            "INSERT INTO recordings_fts (recordings_fts) VALUES ('rebuild')",
        ],
    )
)
MIGRATIONS.append(
    (
        4,
        "numbers indexed with the search order after them: an exact number's page is a range",
        [
            # IF EXISTS: a bulk load killed before version 4 left them out.
            "DROP INDEX IF EXISTS recordings_by_caller",
            "DROP INDEX IF EXISTS recordings_by_dialed",
            "CREATE INDEX recordings_by_caller_start ON recordings (ccid, caller, start_ms, id)",
            "CREATE INDEX recordings_by_dialed_start ON recordings (ccid, dialed, start_ms, id)",
        ],
    )
)
# Version 5: names keyed in time order, as on PostgreSQL (store/names), and a dictionary of
# the names with their number of entries, kept by triggers: what wildcards expand to, and
# exact counts for choosing the rarest term of an AND. The recording's pk, not its id, ends
# the key (half the size): recordings of one name that start in the same millisecond are
# put in id order as they are read.
_NAMES_TABLE = """CREATE TABLE {0} (
    ccid TEXT NOT NULL,
    name TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    pk INTEGER NOT NULL,
    sig INTEGER NOT NULL,
    PRIMARY KEY (ccid, name, start_ms, pk)
) WITHOUT ROWID"""
_FILL_DICTIONARY = (
    "INSERT INTO name_dictionary (ccid, name, entries)"
    " SELECT ccid, name, count(*) FROM recording_names GROUP BY ccid, name"
)
MIGRATIONS.append(
    (
        5,
        "names keyed by (ccid, name, start_ms, pk) with signatures; a dictionary of names",
        [
            _NAMES_TABLE.format("recording_names_v5"),
            """INSERT INTO recording_names_v5 (ccid, name, start_ms, pk, sig)
            SELECT r.ccid, n.name, r.start_ms, r.pk, s.sig
            FROM (SELECT pk, signature(name) AS sig FROM recording_names GROUP BY pk) AS s
            JOIN recordings r ON r.pk = s.pk
            JOIN recording_names n ON n.pk = s.pk
            ORDER BY r.ccid, n.name, r.start_ms, r.pk""",
            "DROP TABLE recording_names",
            "ALTER TABLE recording_names_v5 RENAME TO recording_names",
            "CREATE INDEX recording_names_by_pk ON recording_names (pk)",
            """CREATE TABLE name_dictionary (
                ccid TEXT NOT NULL,
                name TEXT NOT NULL,
                entries INTEGER NOT NULL,
                PRIMARY KEY (ccid, name)
            ) WITHOUT ROWID""",
            _FILL_DICTIONARY,
            "CREATE TRIGGER recording_names_count_insert AFTER INSERT ON recording_names BEGIN"
            " INSERT INTO name_dictionary (ccid, name, entries) VALUES (new.ccid, new.name, 1)"
            " ON CONFLICT (ccid, name) DO UPDATE SET entries = entries + 1; END",
            "CREATE TRIGGER recording_names_count_delete AFTER DELETE ON recording_names BEGIN"
            " UPDATE name_dictionary SET entries = entries - 1"
            " WHERE ccid = old.ccid AND name = old.name; END",
        ],
    )
)
NUMBERS = ("caller", "dialed")


def _fill_trigrams(column: str) -> list[str]:
    """Index every recording's number afresh, in pk order. Not FTS5's ``'rebuild'``: that
    reads the numbers through whichever index covers them (the time-ordered one), and rows
    that arrive out of rowid order make FTS5 write a segment for nearly each one: minutes
    at a million recordings, hours at ten million."""
    table = f"{column}_fts"
    hashsize = f"INSERT INTO {table} ({table}, rank) VALUES ('hashsize', {{}})"
    return [
        f"INSERT INTO {table} ({table}) VALUES ('delete-all')",
        # FTS5 writes its pending terms out as a segment each time they reach 1 MB, and
        # merges those segments again and again as they pile up: 64 MB at a time, the
        # filling of 2M numbers takes 0.75x the time. Set back afterwards.
        hashsize.format(64 << 20),
        f"INSERT INTO {table} (rowid, {column})"
        f" SELECT pk, {column} FROM recordings NOT INDEXED ORDER BY pk",
        hashsize.format(1 << 20),
    ]


def _trigram_index(column: str) -> list[str]:
    """``{column}_fts``: an FTS5 trigram index of one number column, kept by triggers."""
    table, row = f"{column}_fts", f"(rowid, {column}) VALUES (new.pk, new.{column})"
    delete = f"({table}, rowid, {column}) VALUES ('delete', old.pk, old.{column})"
    return [
        f"CREATE VIRTUAL TABLE {table} USING fts5({column}, content='recordings',"
        " content_rowid='pk', tokenize='trigram')",
        f"CREATE TRIGGER {table}_insert AFTER INSERT ON recordings BEGIN"
        f" INSERT INTO {table} {row}; END",
        f"CREATE TRIGGER {table}_delete AFTER DELETE ON recordings BEGIN"
        f" INSERT INTO {table} {delete}; END",
        f"CREATE TRIGGER {table}_update AFTER UPDATE OF {column} ON recordings BEGIN"
        f" INSERT INTO {table} {delete}; INSERT INTO {table} {row}; END",
        *_fill_trigrams(column),
    ]


MIGRATIONS.append(
    (
        6,
        "reversed numbers indexed with the search order after them: suffix matches sort from"
        " the index alone; the time-ordered walk reads numbers and stop from its index; a"
        " trigram index per number",
        [
            # IF EXISTS: a bulk load killed before version 6 left them out.
            "DROP INDEX IF EXISTS recordings_by_caller_rev",
            "DROP INDEX IF EXISTS recordings_by_dialed_rev",
            "CREATE INDEX recordings_by_caller_rev_start"
            " ON recordings (ccid, caller_rev, start_ms, id)",
            "CREATE INDEX recordings_by_dialed_rev_start"
            " ON recordings (ccid, dialed_rev, start_ms, id)",
            "DROP INDEX IF EXISTS recordings_by_start",
            "CREATE INDEX recordings_by_start_covering"
            " ON recordings (ccid, start_ms, id, caller, dialed, stop_ms)",
            # A trigram index per number: a caller's candidates never read the dialed
            # numbers' postings (a few hundred numbers repeated on every recording).
            "DROP TRIGGER IF EXISTS recordings_fts_insert",
            "DROP TRIGGER IF EXISTS recordings_fts_delete",
            "DROP TRIGGER IF EXISTS recordings_fts_update",
            "DROP TABLE recordings_fts",
            *(ddl for column in NUMBERS for ddl in _trigram_index(column)),
        ],
    )
)
# Version 7 changes no table: documents written from then on are compressed (``doccodec``),
# which a callrec of version 6 could not read. It refuses the database instead.
MIGRATIONS.append((7, "documents compressed (doccodec); those stored before stay readable", []))
MIGRATIONS.append(
    (
        8,
        "the earliest and latest start per block of pks (sqliteblocks): an infix pattern's"
        " candidates are read a few blocks at a time, up to the page's end",
        [
            """CREATE TABLE recording_blocks (
                block INTEGER PRIMARY KEY,
                min_start INTEGER NOT NULL,
                max_start INTEGER NOT NULL
            )""",
            f"INSERT INTO recording_blocks (block, min_start, max_start)"
            f" SELECT pk >> {BLOCK_BITS}, min(start_ms), max(start_ms) FROM recordings"
            f" GROUP BY pk >> {BLOCK_BITS}",
        ],
    )
)
# Version 9: the ids' uniqueness kept by a named index, which a load into an empty database
# drops and builds at the end like the others (``IDS``), instead of the table's constraint,
# which cannot be dropped. A load's new ids land all over their index: at 10M recordings,
# keeping it up to date took 2.4x as long as inserting without it and sorting it once at
# the end (docs/performance.md). SQLite cannot drop a constraint: the table is written again,
# its pks kept (so the trigram tables, keyed by pk, stay right), and the indexes and triggers
# that went with the old one are built again at the open (``DERIVED``), a step at a time.
IDS = "recordings_by_id"
MIGRATIONS.append(
    (
        9,
        "the ids' uniqueness as an index (recordings_by_id) that a bulk load builds at the end",
        [
            """CREATE TABLE recordings_v9 (
                pk INTEGER PRIMARY KEY,
                ccid TEXT NOT NULL,
                id TEXT NOT NULL,
                region TEXT,
                start_ms INTEGER NOT NULL,
                stop_ms INTEGER,
                caller TEXT NOT NULL,
                dialed TEXT NOT NULL,
                doc BLOB NOT NULL,
                caller_rev TEXT NOT NULL DEFAULT '',
                dialed_rev TEXT NOT NULL DEFAULT ''
            )""",
            "INSERT INTO recordings_v9 (pk, ccid, id, region, start_ms, stop_ms, caller, dialed,"
            " doc, caller_rev, dialed_rev) SELECT pk, ccid, id, region, start_ms, stop_ms,"
            " caller, dialed, doc, caller_rev, dialed_rev FROM recordings ORDER BY pk",
            "DROP TABLE recordings",  # and its indexes and triggers, built again at the open
            "ALTER TABLE recordings_v9 RENAME TO recordings",
            f"CREATE UNIQUE INDEX {IDS} ON recordings (ccid, id)",
        ],
    )
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class _Signature:
    """``signature(name)``: the aggregate of ``store.names.signature`` over a group's names."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def step(self, name: Any, /) -> None:
        self.names.append(name)

    def finalize(self) -> int:
        return signature(self.names)


def _derived_structures() -> dict[str, str]:
    """Every index and trigger the latest schema has, by name, as the migrations create
    them: what a bulk load may drop and build again once at the end."""
    found: dict[str, str] = {}
    for _, _, statements in MIGRATIONS:
        for statement in statements:
            words = [word for word in statement.split() if word != "UNIQUE"]
            if words[:2] in (["CREATE", "INDEX"], ["CREATE", "TRIGGER"]):
                found[words[2]] = statement
            elif words[:2] in (["DROP", "INDEX"], ["DROP", "TRIGGER"]):
                found.pop(words[-1], None)
    return found


def kind(ddl: str) -> str:
    """``INDEX`` or ``TRIGGER``: what the statement ``ddl`` of ``DERIVED`` creates."""
    return "INDEX" if "INDEX" in ddl.split()[1:3] else "TRIGGER"


DERIVED = _derived_structures()


def build_steps(missing: dict[str, str]) -> list[list[str]]:
    """The statements that build the ``missing`` structures (name: DDL), by transaction: an
    index alone; a trigram table's triggers with its filling, and the names dictionary's
    with its counting, so that no trigger is ever there without what it keeps up to date.
    Each commit lets the log be checkpointed and started again: in one transaction the
    builds of 10M recordings filled a log of 5.6 GB and took 1.36x as long
    (docs/performance.md)."""
    indexes = {name: ddl for name, ddl in missing.items() if kind(ddl) == "INDEX"}
    # The ids' first: a load may have stored a recording twice, merged before it is built
    # (``sqliterows.index_ids``), and the fewer other indexes then, the cheaper the merge.
    steps = [[indexes[name]] for name in sorted(indexes, key=lambda name: name != IDS)]
    covered = set(indexes)
    fills = {f"{column}_fts_": _fill_trigrams(column) for column in NUMBERS}
    fills["recording_names_count_"] = ["DELETE FROM name_dictionary", _FILL_DICTIONARY]
    for prefix, fill in fills.items():
        triggers = {name: ddl for name, ddl in missing.items() if name.startswith(prefix)}
        if triggers:
            steps.append([*triggers.values(), *fill])
            covered |= triggers.keys()
    assert covered == missing.keys(), "a derived structure that no step builds"
    return steps


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema up to ``target``, one transaction per step; returns the version."""
    conn.create_function("reversed", 1, lambda text: text[::-1], deterministic=True)
    conn.create_aggregate("signature", 1, _Signature)
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this callrec "
            f"({SCHEMA_VERSION}); upgrade callrec"
        )
    for number, _, statements in MIGRATIONS:
        if version < number <= target:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            version = number
    return version
