"""Number patterns and stores to try them on, shared by the tests of the plans that read a
pattern's candidates part by part (SQLite's blocks, PostgreSQL's windows of time)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from callrec.demo import demo_recordings
from callrec.doccodec import decode
from callrec.ingest import prepare
from callrec.media.locations import Storages
from callrec.query import RecordingQuery, format_instant, matches, parse_instant, parse_query
from callrec.store import SearchKey, search_key

CCID = "cc1"
PATTERNS = ["*4668*", "*555*", "*650*", "*800*55*", "*123*", "*ALICE*", "*0000*"]
ReadPage = Callable[[RecordingQuery, SearchKey | None, int], list[bytes]]


def recordings(count: int = 600) -> list[dict[str, Any]]:
    """Demo recordings in the order their calls happened, ready to store."""
    storages = Storages({})
    docs = demo_recordings(count, seed=5, ccid=CCID, media=False)
    return [prepare(storages, doc, CCID) for doc in docs]


def expected_ids(store: Any, params: dict[str, str]) -> list[str]:
    """The ids the query matches, in page order, by the reference matcher."""
    everything = store.search(CCID, parse_query({"startTime": "0"}), limit=100_000)
    query = parse_query(params)
    return [d["id"] for d in sorted((d for d in everything if matches(query, d)), key=search_key)]


def all_pages(read_page: ReadPage, params: dict[str, str], limit: int) -> list[str]:
    """The ids of every page, each read by ``read_page(query, after, limit)``."""
    query, after, ids = parse_query(params), None, []
    while True:
        docs = [decode(blob) for blob in read_page(query, after, limit)]
        ids += [d["id"] for d in docs]
        if len(docs) < limit:
            return ids
        after = search_key(docs[-1])


def queries(store: Any) -> list[dict[str, str]]:
    """Each pattern on the caller, on the dialed number beside another pattern, and on the
    caller within a random window of time."""
    rng = random.Random(9)
    starts = [
        d["startTime"] for d in store.search(CCID, parse_query({"startTime": "0"}), limit=1000)
    ]
    out = []
    for pattern in PATTERNS:
        out.append({"callerPhoneNumber": pattern})
        out.append({"dialedPhoneNumber": pattern, "callerPhoneNumber": "*1*"})
        low, high = sorted(parse_instant(rng.choice(starts), "s") for _ in range(2))
        out.append(
            {
                "callerPhoneNumber": pattern,
                "startTime": format_instant(low),
                "endTime": format_instant(high),
            }
        )
    return out
