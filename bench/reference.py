"""The reference answer: callrec's pure-Python matcher over every generated recording."""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

from callrec.query import matches, parse_instant, parse_query


class Reference:
    """Every recording of a JSON-lines file, in search order ((startTime ms, id))."""

    def __init__(self, jsonl: Path) -> None:
        with jsonl.open(encoding="utf-8") as handle:
            docs = [json.loads(line) for line in handle]
        if len({d["id"] for d in docs}) != len(docs):
            raise SystemExit(f"{jsonl}: an id appears twice; the reference needs one line each")
        keyed = sorted(((parse_instant(d["startTime"], "startTime"), d["id"]), d) for d in docs)
        self.keys = [key for key, _ in keyed]
        self.docs: list[dict[str, Any]] = [doc for _, doc in keyed]

    def page(self, params: dict[str, str], limit: int) -> list[str]:
        """The ids of the page a query measures: its ``page`` key (else the first), or the
        last page there is when there are fewer."""
        page = int(params.get("page", "1"))
        ids = self.first_page(params, page * limit)
        return ids[last_offset(len(ids), page, limit) :]

    def first_page(self, params: dict[str, str], limit: int) -> list[str]:
        """The ids of the first ``limit`` matches, walking in search order. A recording that
        starts before ``startTime`` cannot match, so the walk begins at the first that does not."""
        query = parse_query(params)
        start = (
            0 if query.start_from is None else bisect.bisect_left(self.keys, (query.start_from,))
        )
        ids: list[str] = []
        for doc in self.docs[start:]:
            if matches(query, doc):
                ids.append(doc["id"])
                if len(ids) == limit:
                    break
        return ids


def last_offset(matches: int, page: int, limit: int) -> int:
    """Where page ``page`` starts, or the last page when there are fewer (``matches`` counted
    up to the end of page ``page``): a client following next links stops at the last page."""
    return min((page - 1) * limit, max(0, (matches - 1) // limit * limit))
