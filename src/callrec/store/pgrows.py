"""The PostgreSQL store's writes of recordings: their rows and name entries; and the repeats of
a load that had no index of ids, merged before that index is built (``merge_repeats``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import psycopg

from callrec.doccodec import decode
from callrec.model import IndexKeys, Stored, index_keys
from callrec.store import indexed_columns, merged_repeats
from callrec.store.names import signature

_RECORDING_TYPES = ["text", "text", "text", "int8", "int8", "text", "text", "text", "text", "bytea"]
_NAME_TYPES = ["int8", "int8", "text", "text", "text"]
MERGE_BATCH = 1000  # recordings merged and written at a time, while their rows are read
_UPDATE = (
    "UPDATE recordings SET region = %s, start_ms = %s, stop_ms = %s, caller = %s, dialed = %s,"
    " caller_rev = %s, dialed_rev = %s, document = %s"
)


def columns(ccid: str, row: Stored) -> tuple[Any, ...]:
    """A recording's row in ``recordings``, in the order of its columns."""
    return (ccid, row.keys.id, *indexed_columns(row.keys), row.packed)


def write_rows(
    conn: psycopg.Connection[Any], ccid: str, rows: list[Stored], stored: set[str]
) -> None:
    """Write the recordings and their names. Those not ``stored`` before are new (their
    locks are held, or the load has no index of ids yet) and are copied in."""
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
                    copy.write_row(columns(ccid, row))
        if replaced:
            cur.executemany(
                f"{_UPDATE} WHERE ccid = %s AND id = %s",
                [(*columns(ccid, row)[2:], ccid, row.keys.id) for row in replaced],
            )
            cur.execute(
                "DELETE FROM recording_names WHERE ccid = %s AND id = ANY(%b)",
                (ccid, [row.keys.id for row in replaced]),
            )
    write_names(conn, ccid, [row.keys for row in rows])


def write_names(conn: psycopg.Connection[Any], ccid: str, keys: Iterable[IndexKeys]) -> None:
    """The name entries of recordings (by their ``keys``), and the names in the dictionary."""
    names = [
        (each.start_ms, sig, ccid, name, each.id)
        for each in keys
        for sig in (signature(each.names),)
        for name in each.names
    ]
    with conn.cursor() as cur:
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


def merged_rows(
    conn: psycopg.Connection[Any], ccid: str, ids: list[str]
) -> dict[str, Stored | bytes]:
    """Recordings with more than one row, each merged from all of them in ``merge_repeats``'s
    order. A write beside a load without the index of ids cannot see the load's rows not
    committed yet, and adds one of its own: a later write must start from both, or what one
    of them holds is lost when it replaces them all (each row of the id is written with the
    merge; ``merge_repeats`` keeps one when the index is built)."""
    rows = conn.execute(
        "SELECT id, document FROM recordings WHERE ccid = %s AND id = ANY(%b)"
        " ORDER BY id, age(xmin) DESC, ctid",
        (ccid, ids),
    )
    merged: dict[str, Stored | bytes] = {}
    for rec_id, group in groupby(rows, key=itemgetter(0)):
        blobs = [bytes(blob) for _, blob in group]
        merged[rec_id] = merged_repeats(rec_id, blobs) or blobs[0]
    return merged


def merge_repeats(conn: psycopg.Connection[Any]) -> int:
    """A load into an empty database inserts without the index of ids (``pgschema.IDS``): a
    recording that came more than once has a row for each time. Each such recording's rows
    are merged into its first, in the order of the transactions that wrote them (a load's
    batch is one, its own repeats merged in memory), as a load with the index merges them
    line by line; the others are deleted, and its names written again. A repeat in exactly
    the stored form (a file loaded twice) is only deleted. In the caller's transaction, the
    table locked against other writers. Returns how many rows were deleted."""
    conn.execute("LOCK TABLE recordings IN SHARE MODE")
    conn.execute(
        "CREATE TEMP TABLE repeated_ids ON COMMIT DROP AS"
        " SELECT ccid, id FROM recordings GROUP BY ccid, id HAVING count(*) > 1"
    )
    conn.execute(
        "DELETE FROM recording_names n USING repeated_ids r WHERE n.ccid = r.ccid AND n.id = r.id"
    )
    deleted = 0
    groups: list[tuple[str, str, list[tuple[str, bytes]]]] = []
    # Server-side: a file loaded twice repeats every recording it holds.
    with conn.cursor(name="callrec_repeats") as rows:
        rows.execute(
            "SELECT r.ccid, r.id, r.ctid::text, r.document"
            " FROM recordings r JOIN repeated_ids USING (ccid, id)"
            " ORDER BY r.ccid, r.id, age(r.xmin) DESC, r.ctid"
        )
        for (ccid, rec_id), group in groupby(rows, key=itemgetter(0, 1)):
            groups.append((ccid, rec_id, [(ctid, bytes(blob)) for _, _, ctid, blob in group]))
            if len(groups) == MERGE_BATCH:
                deleted += _merge(conn, groups)
                groups.clear()
    return deleted + _merge(conn, groups)


def _merge(
    conn: psycopg.Connection[Any], groups: Sequence[tuple[str, str, list[tuple[str, bytes]]]]
) -> int:
    """Each recording's rows (ctid and stored form, in merge order) merged into its first;
    returns how many rows were deleted."""
    updates: list[tuple[Any, ...]] = []
    later: list[str] = []
    names: dict[str, list[IndexKeys]] = {}  # by ccid
    for ccid, rec_id, rows in groups:
        merged = merged_repeats(rec_id, [blob for _, blob in rows])
        if merged is not None:
            updates.append((*columns(ccid, merged)[2:], rows[0][0]))
        keys = merged.keys if merged is not None else index_keys(decode(rows[0][1]))
        names.setdefault(ccid, []).append(keys)
        later += [ctid for ctid, _ in rows[1:]]
    with conn.cursor() as cur:
        cur.executemany(f"{_UPDATE} WHERE ctid = %s::tid", updates)
        cur.execute("DELETE FROM recordings WHERE ctid = ANY(%s::tid[])", (later,))
    for ccid, keys_of_ccid in names.items():
        write_names(conn, ccid, keys_of_ccid)
    return len(later)
