"""The SQLite store's writes of recordings: their rows, name entries and blocks; and the
index of ids, built after a load that stored some recording more than once."""

from __future__ import annotations

import sqlite3
from typing import Any

from callrec.doccodec import decode
from callrec.model import IndexKeys, Stored, index_keys
from callrec.store import indexed_columns, merged_repeats
from callrec.store.names import signature
from callrec.store.sqliteblocks import UPDATE_BLOCKS, block_bounds
from callrec.store.sqliteschema import DERIVED, IDS

_DELETE_NAME = "DELETE FROM recording_names WHERE ccid = ? AND name = ? AND start_ms = ? AND pk = ?"
# The ids stored more than once, after a given one, a page at a time.
_REPEATED = (
    "SELECT ccid, id FROM recordings INDEXED BY recordings_by_id_repeated"
    " WHERE (ccid, id) > (?, ?) GROUP BY ccid, id HAVING count(*) > 1"
    " ORDER BY ccid, id LIMIT 500"
)


def columns(row: Stored) -> tuple[Any, ...]:
    """A recording's ``recordings`` columns from region to doc, in their order."""
    return (*indexed_columns(row.keys), row.packed)


def write_rows(
    conn: sqlite3.Connection,
    ccid: str,
    written: dict[int, Stored],
    replaced: set[int],
    stored_keys: dict[int, IndexKeys] | None = None,
) -> None:
    """The recordings ``written`` (by pk), and their name entries and blocks; those whose
    pk is in ``replaced`` are stored already and overwritten, their name entries found by
    pk, or by the keys they were stored with (``stored_keys``, in a bulk load)."""
    conn.executemany(
        "UPDATE recordings SET region = ?, start_ms = ?, stop_ms = ?, caller = ?,"
        " dialed = ?, caller_rev = ?, dialed_rev = ?, doc = ? WHERE pk = ?",
        [(*columns(row), pk) for pk, row in written.items() if pk in replaced],
    )
    conn.executemany(
        "INSERT INTO recordings (pk, ccid, id, region, start_ms, stop_ms, caller,"
        " dialed, caller_rev, dialed_rev, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (pk, ccid, row.keys.id, *columns(row))
            for pk, row in written.items()
            if pk not in replaced
        ],
    )
    conn.executemany(
        UPDATE_BLOCKS, block_bounds({pk: row.keys.start_ms for pk, row in written.items()})
    )
    if stored_keys is None:
        conn.executemany(
            "DELETE FROM recording_names WHERE pk = ?",
            [(pk,) for pk in written if pk in replaced],
        )
    else:  # each entry by its primary key: no index by pk to read, nor the whole table
        conn.executemany(
            _DELETE_NAME,
            [
                (ccid, name, keys.start_ms, pk)
                for pk, keys in stored_keys.items()
                if pk in written
                for name in keys.names
            ],
        )
    conn.executemany(
        "INSERT INTO recording_names (ccid, name, start_ms, pk, sig) VALUES (?, ?, ?, ?, ?)",
        [
            (ccid, name, keys.start_ms, pk, sig)
            for pk, row in written.items()
            for keys in (row.keys,)
            for sig in (signature(keys.names),)
            for name in keys.names
        ],
    )


def has_ids_index(conn: sqlite3.Connection) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?", (IDS,))
    return found.fetchone() is not None


def index_ids(conn: sqlite3.Connection) -> int:
    """Build the unique index of ids (``IDS``), in the caller's transaction. A load into an
    empty database inserts without it, so a recording that came more than once has a row for
    each time: those rows are first merged into the first of them, in pk (file) order, as a
    load with the index merges them line by line, and the others deleted with their names.
    Returns how many rows were merged away."""
    try:
        conn.execute(DERIVED[IDS])
        return 0
    except sqlite3.IntegrityError:  # some id stored more than once
        pass
    conn.execute("CREATE INDEX recordings_by_id_repeated ON recordings (ccid, id)")
    merged = 0
    last: tuple[str, str] = ("", "")
    while repeated := conn.execute(_REPEATED, last).fetchall():
        for ccid, rec_id in repeated:
            merged += _merge_repeated(conn, ccid, rec_id)
        last = repeated[-1]
    conn.execute("DROP INDEX recordings_by_id_repeated")
    conn.execute(DERIVED[IDS])
    return merged


def _merge_repeated(conn: sqlite3.Connection, ccid: str, rec_id: str) -> int:
    """One recording's rows merged into its first; returns how many were deleted."""
    rows = conn.execute(
        "SELECT pk, doc FROM recordings WHERE ccid = ? AND id = ? ORDER BY pk", (ccid, rec_id)
    ).fetchall()
    keys = {blob: index_keys(decode(blob)) for blob in {blob for _, blob in rows}}
    (first, first_blob), *later = rows
    merged = merged_repeats(rec_id, [blob for _, blob in rows])
    if merged is not None:
        write_rows(conn, ccid, {first: merged}, {first}, {first: keys[first_blob]})
    conn.executemany(
        _DELETE_NAME,
        [(ccid, name, keys[blob].start_ms, pk) for pk, blob in later for name in keys[blob].names],
    )
    conn.executemany("DELETE FROM recordings WHERE pk = ?", [(pk,) for pk, _ in later])
    return len(later)
