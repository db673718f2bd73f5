"""userName search planned as ordered ranges of the names index (store/names), on both
backends (store/pgsearch, store/sqlitenames).

On data made for it: recordings that start at the same millisecond (so that windows and
cursors cut through ties), a recording whose start moves when it is merged, names that are gone,
and the signatures that Python writes and SQL recomputes on upgrade. Every answer is checked
against the reference matcher, whole and page by page; the plans are checked to be the ones
meant.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest

from callrec.model import index_keys
from callrec.query import format_instant, matches, parse_instant, parse_query, recording_names
from callrec.store import RecordingStore, names, open_store, pgsearch, search_key, sqlitenames
from callrec.store import postgres as pg_store
from callrec.store.sqlite import SQLiteStore
from conftest import local_recording

CCID = "cc1"
BASE = parse_instant("2024-03-01T08:00:00.000+0000", "t")
FIRST = ["Ann", "Bob", "Eve", "Zoë", "Ólafur"]
LAST = ["Lee", "Kim", "Öz"]


def contact(first: str, last: str, user: str) -> dict[str, Any]:
    return {
        "event": "Joined",
        "contact": {"type": "Agent", "userName": user, "firstName": first, "lastName": last},
    }


def made_recordings() -> list[dict[str, Any]]:
    """60 recordings, three to each start time, names from small pools (so that every name is
    shared by many), some with a second contact."""
    docs = []
    for i in range(60):
        start = BASE + (i // 3) * 60_000
        first, last = FIRST[i % len(FIRST)], LAST[(i // 2) % len(LAST)]
        contacts = [contact(first, last, f"{first.lower()}.{last.lower()}{i % 4}@example.com")]
        if i % 4 == 0:
            other = FIRST[(i // 4) % len(FIRST)]
            contacts.append(contact(other, LAST[i % len(LAST)], f"agent{i % 7}"))
        docs.append(
            local_recording(
                f"r{i:02d}-{'abc'[i % 3]}",
                region="usw1" if i % 5 else "euw1",
                callerPhoneNumber=f"+1 650 555 {i % 6:04d}",
                startTime=format_instant(start),
                stopTime=format_instant(start + (i % 7) * 10_000),
                eventHistory=contacts,
            )
        )
    return docs


@pytest.fixture
def store(database_url: str) -> Iterator[RecordingStore]:
    opened = open_store(database_url)
    try:
        assert all(not isinstance(r, Exception) for r in opened.upsert(CCID, made_recordings()))
        opened.optimize()  # statistics, so that the rarest term drives
        yield opened
    finally:
        opened.close()


def everything(store: RecordingStore) -> list[dict[str, Any]]:
    return store.search(CCID, parse_query({"startTime": "0"}), limit=10_000)


def expected_ids(store: RecordingStore, params: dict[str, str], region: str | None) -> list[str]:
    query = parse_query(params)
    docs = [
        d
        for d in everything(store)
        if matches(query, d) and (region is None or d.get("region") == region)
    ]
    return [d["id"] for d in sorted(docs, key=search_key)]


def pages(
    store: RecordingStore, params: dict[str, str], size: int, region: str | None, most: int
) -> list[str]:
    """Every page in turn, each after the last one's key; at most ``most`` pages."""
    query, after, ids = parse_query(params), None, []
    for _ in range(most):
        page = store.search(CCID, query, limit=size, after=after, region=region)
        if not page:
            return ids
        ids += [d["id"] for d in page]
        after = search_key(page[-1])
    raise AssertionError(f"more than {most} pages of {size}: the cursor does not advance")


def at_start(i: int, delta: int = 0) -> str:
    return str(BASE + (i // 3) * 60_000 + delta)


QUERIES: list[dict[str, str]] = [
    {"userName": "ann"},
    {"userName": "ANN"},
    {"userName": "Ólafur"},
    {"userName": "ann bob"},
    {"userName": "zoë ann Eve"},
    {"userName": "ann AND lee"},
    {"userName": "ann AND lee AND kim"},
    {"userName": "ann AND lee bob AND öz"},
    {"userName": "eve AND agent*"},
    {"userName": "a*"},
    {"userName": "*e"},
    {"userName": "ann.*"},
    {"userName": "*o* AND lee"},
    {"userName": "ann AND *e*"},
    {"userName": "nobody"},
    {"userName": "nobody* ann"},
    {"userName": "ann", "startTime": at_start(12)},
    {"userName": "ann", "startTime": at_start(12, 1)},
    {"userName": "ann bob", "startTime": at_start(12), "endTime": at_start(40, 30_000)},
    {"userName": "ann AND lee", "startTime": at_start(3, -1)},
    {"userName": "zoë", "endTime": at_start(30)},
    {"userName": "ann eve", "callerPhoneNumber": "+1 650 555 0000"},
    {"userName": "bob", "callerPhoneNumber": "*0003"},
    {"userName": "a* AND lee", "dialedPhoneNumber": "14155551234"},
]
REGIONS = [None, "usw1"]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(
    "params", QUERIES, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items())
)
def test_answers_are_the_reference_whole_and_page_by_page(
    store: RecordingStore, params: dict[str, str], region: str | None
) -> None:
    expected = expected_ids(store, params, region)
    query = parse_query(params)
    got = [d["id"] for d in store.search(CCID, query, limit=1000, region=region)]
    assert got == expected
    for size in (1, 2, 7):
        assert pages(store, params, size, region, most=len(expected) // size + 2) == expected


def test_the_queries_are_not_trivial(store: RecordingStore) -> None:
    sizes = [len(expected_ids(store, params, None)) for params in QUERIES]
    assert sum(1 for s in sizes if s >= 3) >= len(QUERIES) * 2 // 3, sizes
    assert max(sizes) < 60, "some query matches everything"
    everyone = {d["id"] for d in everything(store)}
    assert len(everyone) == 60


def planner(store: RecordingStore) -> Any:
    """The module whose ``plan_names`` the store calls."""
    return sqlitenames if isinstance(store, SQLiteStore) else pg_store


def plan_of(store: RecordingStore, monkeypatch: pytest.MonkeyPatch, user: str) -> Any:
    plans: list[Any] = []
    module = planner(store)
    real = module.plan_names

    def spy(*args: Any) -> Any:
        plans.append(real(*args))
        return plans[-1]

    monkeypatch.setattr(module, "plan_names", spy)
    store.search(CCID, parse_query({"userName": user}), limit=5)
    monkeypatch.setattr(module, "plan_names", real)
    assert len(plans) == 1
    return plans[0]


def test_each_query_shape_gets_its_plan(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One exact name: one ordered range, nothing else to check.
    plan = plan_of(store, monkeypatch, "Ann")
    assert [(b.name, b.others) for b in plan.branches] == [("ann", ())]
    # OR: a range per name, merged.
    plan = plan_of(store, monkeypatch, "ann bob zoë")
    assert sorted(b.name for b in plan.branches) == ["ann", "bob", "zoë"]
    # A wildcard: a range per name of the dictionary it matches.
    plan = plan_of(store, monkeypatch, "ann.*")
    found = sorted(b.name for b in plan.branches)
    assert len(found) >= 2, found
    assert all(n.startswith("ann.") for n in found), found
    # Too many names to merge: the generic plan.
    monkeypatch.setattr(names, "MAX_BRANCHES", len(found) - 1)
    assert plan_of(store, monkeypatch, "ann.*").branches is None


def test_the_rarest_term_drives_an_and(
    store: RecordingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = everything(store)
    counts: dict[str, int] = {}
    for doc in docs:
        for name in recording_names(doc):
            counts[name] = counts.get(name, 0) + 1
    rare = min(("agent1", "agent2", "agent3"), key=lambda n: counts.get(n, 0))
    common = max(counts, key=lambda n: counts[n])
    assert counts[rare] < counts[common] / 3, counts
    for user in (f"{rare} AND {common}", f"{common} AND {rare}"):
        plan = plan_of(store, monkeypatch, user)
        assert [b.name for b in plan.branches] == [rare], user
        assert [t.pattern for t in plan.branches[0].others] == [common]


def test_a_start_that_moves_on_merge_moves_the_names(empty_store: RecordingStore) -> None:
    store = empty_store

    def rec(rec_id: str, start: str, *contacts: dict[str, Any]) -> dict[str, Any]:
        return local_recording(rec_id, startTime=start, stopTime=start, eventHistory=list(contacts))

    ann = contact("Ann", "Lee", "ann.lee@example.com")
    store.upsert(
        CCID,
        [
            rec("m1", "2024-01-01T10:00:00.000+0000", ann),
            rec("m2", "2024-01-01T10:05:00.000+0000", ann),
            rec("m3", "2024-01-01T10:10:00.000+0000", ann, contact("Bob", "Kim", "bob")),
        ],
    )

    def ids(**params: str) -> list[str]:
        found = store.search(CCID, parse_query(params), limit=100)
        query = parse_query(params)
        reference = sorted((d for d in everything(store) if matches(query, d)), key=search_key)
        assert [d["id"] for d in found] == [d["id"] for d in reference], params
        return [d["id"] for d in found]

    assert ids(userName="ann") == ["m1", "m2", "m3"]
    # m3 is posted again with an earlier start (and one more contact): it now comes first.
    store.upsert(CCID, [rec("m3", "2024-01-01T09:00:00.000+0000", contact("Quinn", "Öz", "quinn"))])
    assert store.get(CCID, "m3")["startTime"] == "2024-01-01T09:00:00.000+0000"
    assert ids(userName="ann") == ["m3", "m1", "m2"]
    assert ids(userName="ann quinn bob") == ["m3", "m1", "m2"]
    assert ids(userName="ann AND bob") == ["m3"]
    assert ids(userName="qu*") == ["m3"]
    assert ids(userName="ann AND qu*") == ["m3"]
    assert ids(userName="ann", startTime="2024-01-01T10:00:00.000+0000") == ["m1", "m2"]
    assert ids(userName="ann", startTime="2024-01-01T09:00:00.000+0000") == ["m3", "m1", "m2"]
    assert ids(userName="ann", startTime="2024-01-01T09:00:00.001+0000") == ["m1", "m2"]
    assert ids(userName="ann AND bob", endTime="2024-01-01T10:10:00.000+0000") == ["m3"]
    query, after, paged = parse_query({"userName": "ann"}), None, []
    for _ in range(4):
        page = store.search(CCID, query, limit=1, after=after)
        if not page:
            break
        paged.append(page[0]["id"])
        after = search_key(page[0])
    assert paged == ["m3", "m1", "m2"]


@pytest.fixture
def empty_store(database_url: str) -> Iterator[RecordingStore]:
    opened = open_store(database_url)
    try:
        yield opened
    finally:
        opened.close()


def sql_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query run directly on the store's database."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


# Each stored name entry: (recording id, name, start_ms, signature).
NAME_ENTRIES = {
    "sqlite": "SELECT r.id, n.name, n.start_ms, n.sig FROM recording_names n"
    " JOIN recordings r ON r.pk = n.pk",
    "postgresql": "SELECT id, name, start_ms, sig FROM recording_names",
}


def test_names_that_are_gone_match_nothing(
    empty_store: RecordingStore, database_url: str, backend: str
) -> None:
    store = empty_store
    xavier = contact("Xavier", "Quartz", "xq")
    store.upsert(CCID, [local_recording("gone", eventHistory=[xavier])])
    assert [d["id"] for d in store.search(CCID, parse_query({"userName": "xav*"}), limit=9)]
    assert store.delete(CCID, "gone") is not None
    left = sql_rows(database_url, "SELECT name FROM name_dictionary ORDER BY name")
    assert ("xavier",) in left  # still in the dictionary (SQLite: with no entries)
    for user in ("xav*", "xavier", "xav* AND quartz", "quartz AND x*"):
        assert store.search(CCID, parse_query({"userName": user}), limit=9) == [], user


def test_stored_names_carry_start_and_signature(
    store: RecordingStore, database_url: str, backend: str
) -> None:
    rows = sql_rows(database_url, NAME_ENTRIES[backend])
    dictionary = {r[0] for r in sql_rows(database_url, "SELECT name FROM name_dictionary")}
    by_id: dict[str, list[tuple[str, int, int]]] = {}
    for rec_id, name, start, sig in rows:
        by_id.setdefault(rec_id, []).append((name, start, sig))
    docs = everything(store)
    assert len(by_id) == len(docs)
    for doc in docs:
        keys = index_keys(doc)
        entries = by_id[doc["id"]]
        assert sorted(name for name, _, _ in entries) == sorted(keys.names)
        assert {start for _, start, _ in entries} == {keys.start_ms}
        assert {sig for _, _, sig in entries} == {names.signature(keys.names)}
        assert set(keys.names) <= dictionary


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_dictionary_counts_every_entry(empty_store: RecordingStore, database_url: str) -> None:
    """SQLite's dictionary counts each name's entries (the planner's exact statistics):
    through inserts, merges that change the names, and deletes."""
    store = empty_store

    def check() -> None:
        counted = sql_rows(
            database_url,
            "SELECT ccid, name, count(*) FROM recording_names GROUP BY ccid, name",
        )
        kept = sql_rows(
            database_url, "SELECT ccid, name, entries FROM name_dictionary WHERE entries > 0"
        )
        assert sorted(counted) == sorted(kept)

    store.upsert(CCID, made_recordings())
    store.upsert("cc2", made_recordings()[:10])
    check()
    assert sql_rows(database_url, "SELECT entries FROM name_dictionary WHERE name = 'ann'")
    ann = contact("Ann", "Lee", "ann.lee@example.com")
    for i in range(0, 60, 7):  # new contacts for some: their old names lose an entry
        store.upsert(CCID, [local_recording(f"r{i:02d}-{'abc'[i % 3]}", eventHistory=[ann])])
    check()
    for i in range(1, 60, 5):
        assert store.delete(CCID, f"r{i:02d}-{'abc'[i % 3]}") is not None
    check()
    assert sql_rows(database_url, "SELECT min(entries) FROM name_dictionary") >= [(0,)]


NAMES = ["ann", "zoë", "ólafur", "i̇lker", "straße", "佐藤", "a_b%c@x", "back\\slash", "x" * 300]


def test_signatures_are_the_same_in_python_and_sql(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        in_sql = conn.execute(
            f"SELECT {pgsearch.name_bits_sql('d.name')} FROM unnest(%s::text[]) AS d(name)",
            (NAMES,),
        ).fetchall()
    in_python = [names.signature([name]) for name in NAMES]
    assert [row[0] for row in in_sql] == in_python
    assert all(bin(names.name_bits(n)).count("1") <= names.SIGNATURE_BITS for n in NAMES)
    assert len(set(in_python)) == len(NAMES)
    both = names.signature(NAMES[:2])
    assert both == in_python[0] | in_python[1]
