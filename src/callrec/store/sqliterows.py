"""The SQLite store's writes of recordings: their rows, name entries and blocks."""

from __future__ import annotations

import sqlite3
from typing import Any

from callrec.model import IndexKeys, Stored
from callrec.store import indexed_columns
from callrec.store.names import signature
from callrec.store.sqliteblocks import UPDATE_BLOCKS, block_bounds


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
            "DELETE FROM recording_names WHERE ccid = ? AND name = ? AND start_ms = ? AND pk = ?",
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
