"""SQLite and PostgreSQL answer every query identically, and as the reference matcher does.

The same few hundred random queries (all five parameters, wildcards anywhere, Unicode names
in any case, AND/OR, time edges to the millisecond) go to both backends over the same data.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callrec.demo import demo_recordings
from callrec.ingest import prepare
from callrec.media.locations import Storages
from callrec.query import format_instant, matches, parse_instant, parse_query
from callrec.store import RecordingStore, open_store, search_key, sqlitenames
from conftest import local_recording

CCID = "demo"
SEED = 20261128


def edge_recordings() -> list[dict[str, Any]]:
    """Shapes the demo data has rarely or never: every one a trap for some backend."""

    def contact(user: str, first: str, last: str) -> dict[str, Any]:
        return {
            "event": "Joined",
            "contact": {"type": "Agent", "userName": user, "firstName": first, "lastName": last},
        }

    return [
        local_recording(
            "edge-1",
            callerPhoneNumber="sip:Alice_%x@pbx.example.com",
            eventHistory=[contact("a_b%c@x", "Straße", "ÉLODIE")],
        ),
        local_recording(
            "edge-2",
            callerPhoneNumber="+1 (650) 466-8888",
            eventHistory=[contact("[x]?*", "İlker", "ǅemal")],
        ),
        local_recording(
            "edge-3",
            stopTime=None,
            startTime="2013-05-17T19:45:32.001Z",
            eventHistory=[contact("back\\slash", "Σοφία", "Ωμέγα")],
        ),
        local_recording(
            "edge-4",
            callerPhoneNumber="",
            dialedPhoneNumber="",
            eventHistory=[contact("dup", "Kim", "kim")],
        ),
    ]


def load(store: RecordingStore, docs: list[dict[str, Any]]) -> None:
    storages = Storages({})
    prepared = [prepare(storages, d, CCID) for d in docs]
    for start in range(0, len(prepared), 200):
        store.upsert(CCID, prepared[start : start + 200])


@pytest.fixture(scope="module")
def data() -> list[dict[str, Any]]:
    docs = list(demo_recordings(400, seed=SEED, ccid=CCID, media=False))
    return docs + edge_recordings()


@pytest.fixture(scope="module")
def stores(
    data: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, pg_server: Any
) -> Iterator[tuple[RecordingStore, RecordingStore]]:
    from pgserver import fresh_schema

    sqlite = open_store(f"sqlite:///{tmp_path_factory.mktemp('agree') / 'callrec.db'}")
    with fresh_schema(pg_server) as url:
        postgres = open_store(url)
        try:
            load(sqlite, data)
            load(postgres, data)
            yield sqlite, postgres
        finally:
            postgres.close()
            sqlite.close()


def alnum(text: str) -> str:
    return "".join(c for c in text if c.isascii() and c.isalnum())


def random_pattern(rng: random.Random, value: str) -> str:
    """A wildcard pattern that sometimes matches ``value``: stars at random places."""
    if not value:
        return rng.choice(["*", "0*", "*9"])
    i, j = sorted(rng.sample(range(len(value) + 1), 2))
    shape = rng.randrange(6)
    if shape == 0:
        return value
    if shape == 1:
        return value[:j] + "*"
    if shape == 2:
        return "*" + value[i:]
    if shape == 3:
        return "*" + value[i:j] + "*"
    if shape == 4:
        return value[:i] + "*" + value[j:]
    return "*".join(value[k] for k in sorted(rng.sample(range(len(value)), min(3, len(value)))))


def names_of(doc: dict[str, Any]) -> list[str]:
    out = []
    for event in doc.get("eventHistory", []):
        contact = event.get("contact", {})
        out += [v for k, v in contact.items() if k in ("userName", "firstName", "lastName") and v]
    return out


def random_name_term(rng: random.Random, data: list[dict[str, Any]]) -> str:
    name = rng.choice(names_of(rng.choice(data)) or ["nobody"])
    if " " in name:  # a space separates terms: reach such a name through a wildcard
        name = name.split()[0] + "*"
    name = rng.choice([name, name.upper(), name.lower(), name.title()])
    return random_pattern(rng, name) if rng.random() < 0.4 else name


def random_query(rng: random.Random, data: list[dict[str, Any]]) -> dict[str, str]:
    doc = rng.choice(data)
    params: dict[str, str] = {}
    while not params:
        if rng.random() < 0.4:
            params["callerPhoneNumber"] = random_pattern(
                rng, alnum(doc.get("callerPhoneNumber") or "")
            )
        if rng.random() < 0.25:
            params["dialedPhoneNumber"] = random_pattern(
                rng, alnum(doc.get("dialedPhoneNumber") or "")
            )
        start = parse_instant(doc["startTime"], "t") if doc.get("startTime") else 0
        if rng.random() < 0.3:  # exact edges, and one millisecond either side
            params["startTime"] = str(start + rng.choice([-1, 0, 1, -86_400_000]))
        if rng.random() < 0.3 and doc.get("stopTime"):
            stop = parse_instant(doc["stopTime"], "t") + rng.choice([-1, 0, 1, 3_600_000])
            params["endTime"] = rng.choice([str(stop), format_instant(stop)])
        if rng.random() < 0.4:
            params["userName"] = random_user(rng, data)
    return params


def random_user(rng: random.Random, data: list[dict[str, Any]]) -> str:
    """1-4 terms, each joined to the previous one by OR (a space) or AND."""
    terms = [random_name_term(rng, data) for _ in range(rng.randint(1, 4))]
    glue = [rng.choice([" ", " AND "]) for _ in terms[1:]]
    return terms[0] + "".join(g + t for g, t in zip(glue, terms[1:], strict=True))


def all_ids(store: RecordingStore, params: dict[str, str]) -> list[str]:
    return [d["id"] for d in store.search(CCID, parse_query(params), limit=10_000)]


def paged_ids(store: RecordingStore, params: dict[str, str], size: int) -> list[str]:
    query, after, ids = parse_query(params), None, []
    while page := store.search(CCID, query, limit=size, after=after):
        ids += [d["id"] for d in page]
        after = search_key(page[-1])
    return ids


QUERIES = list(range(300))  # each number seeds one random query


@pytest.mark.parametrize("n", QUERIES)
def test_backends_agree_with_each_other_and_the_reference(
    n: int, data: list[dict[str, Any]], stores: tuple[RecordingStore, RecordingStore]
) -> None:
    params = random_query(random.Random(SEED + n), data)
    sqlite, postgres = stores
    stored = {
        d["id"]: d for d in sqlite.search(CCID, parse_query({"startTime": "0"}), limit=10_000)
    }
    expected = sorted(
        (d for d in stored.values() if matches(parse_query(params), d)), key=search_key
    )
    from_sqlite = all_ids(sqlite, params)
    assert from_sqlite == [d["id"] for d in expected], params
    assert all_ids(postgres, params) == from_sqlite, params
    if n % 10 == 0:
        assert paged_ids(postgres, params, 7) == paged_ids(sqlite, params, 7) == from_sqlite


def test_the_queries_are_not_trivial(data: list[dict[str, Any]], stores: Any) -> None:
    sqlite, _ = stores
    sizes = [len(all_ids(sqlite, random_query(random.Random(SEED + n), data))) for n in QUERIES]
    assert sum(1 for s in sizes if s == 0) < len(sizes) * 0.7, "most queries match nothing"
    assert sum(1 for s in sizes if 0 < s < 50) > len(sizes) * 0.1, "too few selective queries"


def test_edge_recordings_are_loaded(stores: Any) -> None:
    for store in stores:
        assert store.get(CCID, "edge-1")["callerPhoneNumber"] == "sip:Alice_%x@pbx.example.com"
        assert "stopTime" not in store.get(CCID, "edge-3")


@pytest.fixture
def dense_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every predicate planned as dense: the time-ordered walk instead of index lookups.
    (SQLite plans per query; PostgreSQL leaves the choice to its own planner.)"""
    from callrec.store import sqlite as sqlite_store
    from callrec.store.sqlsearch import Plan

    def dense(*_: Any, **__: Any) -> Plan:
        return Plan(dense_names=True, dense_numbers=frozenset({"caller", "dialed"}))

    monkeypatch.setattr(sqlite_store, "plan_search", dense)
    monkeypatch.setattr(sqlitenames, "number_drives", lambda *_: True)  # not the names' ranges


@pytest.mark.usefixtures("dense_plans")
@pytest.mark.parametrize("n", QUERIES[::3])
def test_the_dense_plan_gives_the_same_answers(
    n: int, data: list[dict[str, Any]], stores: tuple[RecordingStore, RecordingStore]
) -> None:
    params = random_query(random.Random(SEED + n), data)
    expected = sorted(
        (d for d in data_docs(stores[0]) if matches(parse_query(params), d)), key=search_key
    )
    for store in stores:
        assert all_ids(store, params) == [d["id"] for d in expected], params


def data_docs(store: RecordingStore) -> list[dict[str, Any]]:
    return store.search(CCID, parse_query({"startTime": "0"}), limit=10_000)


@pytest.fixture
def trigram_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Infix numbers through the trigram index's candidates (SQLite), whatever their count."""
    from callrec.store import sqlite as sqlite_store
    from callrec.store.sqlsearch import Plan

    def trigrams(*_: Any, **__: Any) -> Plan:
        return Plan(trigram_numbers=frozenset({"caller", "dialed"}))

    monkeypatch.setattr(sqlite_store, "plan_search", trigrams)
    monkeypatch.setattr(sqlitenames, "number_drives", lambda *_: True)


@pytest.mark.usefixtures("trigram_plans")
@pytest.mark.parametrize("n", QUERIES[1::3])
def test_the_trigram_plan_gives_the_same_answers(
    n: int, data: list[dict[str, Any]], stores: tuple[RecordingStore, RecordingStore]
) -> None:
    params = random_query(random.Random(SEED + n), data)
    expected = sorted(
        (d for d in data_docs(stores[0]) if matches(parse_query(params), d)), key=search_key
    )
    assert all_ids(stores[0], params) == [d["id"] for d in expected], params


@pytest.mark.usefixtures("trigram_plans")
@pytest.mark.parametrize("pattern", ["*4668*", "*650*888*", "*ALICE*", "*alice*", "*ice*ex*"])
def test_trigram_candidates_keep_case_and_order(
    pattern: str, stores: tuple[RecordingStore, RecordingStore]
) -> None:
    sqlite, postgres = stores
    params = {"callerPhoneNumber": pattern}
    assert all_ids(sqlite, params) == all_ids(postgres, params)
    expected = [d["id"] for d in data_docs(sqlite) if matches(parse_query(params), d)]
    assert sorted(all_ids(sqlite, params)) == sorted(expected)


# PostgreSQL reads userName terms from ordered ranges of its names index (store/pgsearch): one
# range per exact name, merged for OR, filtered for AND, wildcards expanded through a
# dictionary of names, and the generic plans of sqlsearch when wildcards stand for too many.
# Whichever way a query is planned, the answer must be the reference's, page by page.


def force_shared_planning(monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    """The variants of store/names, which both backends plan with."""
    from callrec.store import names

    if variant == "first term drives":
        monkeypatch.setattr(names, "rarest", lambda group: group[0])
    if variant == "last term drives":
        monkeypatch.setattr(names, "rarest", lambda group: group[-1])
    if variant == "signatures for every wildcard":
        monkeypatch.setattr(names, "BLOOM_OR_MAX", 10**6)
    if variant == "no signatures for wildcards":
        monkeypatch.setattr(names, "BLOOM_OR_MAX", 0)


def force_pg_plan(monkeypatch: pytest.MonkeyPatch, variant: str) -> list[Any]:
    """Plan PostgreSQL's name queries as ``variant`` says; returns the plans made."""
    from callrec.store import names
    from callrec.store import postgres as pg_store

    plans: list[Any] = []
    real = pg_store.plan_names

    def plan(*args: Any) -> names.NamePlan:
        made = real(*args)
        if variant in ("time-ordered walk", "set of matches") and made.branches:
            made = names.NamePlan(None, dense=variant == "time-ordered walk")
        plans.append(made)
        return made

    monkeypatch.setattr(pg_store, "plan_names", plan)
    force_shared_planning(monkeypatch, variant)
    return plans


PG_PLANS = [
    "as planned",
    "first term drives",
    "last term drives",
    "signatures for every wildcard",
    "no signatures for wildcards",
    "time-ordered walk",
    "set of matches",
]


def assert_name_query_answers(
    store: RecordingStore, stored: list[dict[str, Any]], params: dict[str, str]
) -> None:
    """The store answers with the reference's recordings, whole and page by page."""
    query = parse_query(params)
    expected = [d["id"] for d in sorted((d for d in stored if matches(query, d)), key=search_key)]
    assert all_ids(store, params) == expected, params
    assert paged_ids(store, params, 7) == expected, params


def random_name_query(n: int, data: list[dict[str, Any]]) -> dict[str, str]:
    """A random query that always has a userName (and sometimes other criteria)."""
    rng = random.Random(SEED * 31 + n)
    params = random_query(rng, data)
    params.setdefault("userName", random_user(rng, data))
    return params


@pytest.mark.parametrize("variant", PG_PLANS)
@pytest.mark.parametrize("n", QUERIES[::5])
def test_postgres_name_plans_agree_with_the_reference(
    n: int,
    variant: str,
    data: list[dict[str, Any]],
    stores: tuple[RecordingStore, RecordingStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite, postgres = stores
    plans = force_pg_plan(monkeypatch, variant)
    assert_name_query_answers(postgres, data_docs(sqlite), random_name_query(n, data))
    assert plans, "the names plan was not consulted"


# SQLite reads the same ranges (store/sqlitenames), merged in process, unless a number is rarer
# than the names; then, or when wildcards stand for too many names, sqlsearch's generic plans.


def force_sqlite_plan(monkeypatch: pytest.MonkeyPatch, variant: str) -> list[Any]:
    """Plan SQLite's name queries as ``variant`` says; returns the name plans made."""
    import dataclasses

    from callrec.store import names
    from callrec.store import sqlite as sqlite_store

    plans: list[Any] = []
    real_plan, real_search = sqlitenames.plan_names, sqlite_store.plan_search

    def plan(*args: Any) -> Any:
        made = real_plan(*args)
        if variant in ("time-ordered walk", "set of matches"):
            made = names.NamePlan(None)
        plans.append(made)
        return made

    def generic(*args: Any, **kwargs: Any) -> Any:
        made = real_search(*args, **kwargs)
        if variant in ("time-ordered walk", "set of matches"):
            made = dataclasses.replace(made, dense_names=variant == "time-ordered walk")
        return made

    monkeypatch.setattr(sqlitenames, "plan_names", plan)
    monkeypatch.setattr(sqlite_store, "plan_search", generic)
    force_shared_planning(monkeypatch, variant)
    if variant in ("a number drives", "the names drive"):
        drives = variant == "a number drives"
        monkeypatch.setattr(sqlitenames, "number_drives", lambda *_: drives)
    return plans


SQLITE_PLANS = [
    "as planned",
    "first term drives",
    "last term drives",
    "signatures for every wildcard",
    "no signatures for wildcards",
    "a number drives",
    "the names drive",
    "time-ordered walk",
    "set of matches",
]


@pytest.mark.parametrize("variant", SQLITE_PLANS)
@pytest.mark.parametrize("n", QUERIES[2::5])
def test_sqlite_name_plans_agree_with_the_reference(
    n: int,
    variant: str,
    data: list[dict[str, Any]],
    stores: tuple[RecordingStore, RecordingStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite, _ = stores
    plans = force_sqlite_plan(monkeypatch, variant)
    assert_name_query_answers(sqlite, data_docs(sqlite), random_name_query(n, data))
    assert plans, "the names plan was not consulted"


def name_plan_shapes(plan: Any, query: Any, keys_only: bool | None) -> set[str]:
    """What a PostgreSQL name plan does, in the words of pgsearch's docstring."""
    if plan.branches is None:
        return {"generic plan, walk" if plan.dense else "generic plan, set of matches"}
    if not plan.branches:
        return {"no name matches"}
    terms = {term for group in query.user for term in group}
    shapes = {"one ordered range" if len(plan.branches) == 1 else "ranges merged"}
    for branch in plan.branches:
        if branch.name not in terms:
            shapes.add("wildcard expanded to ranges")
        if branch.others:
            shapes.add("filtered by other terms")
        if any(not term.exact for term in branch.others):
            shapes.add("filtered by a wildcard")
    shapes.add("names index alone" if keys_only else "joined to recordings")
    return shapes


def test_the_random_queries_exercise_every_postgres_name_plan(
    data: list[dict[str, Any]],
    stores: tuple[RecordingStore, RecordingStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from callrec.store import postgres as pg_store

    _, postgres = stores
    seen: dict[str, int] = {}
    made: list[Any] = []
    real_plan, real_sql = pg_store.plan_names, pg_store.search_names_sql

    def plan(*args: Any) -> Any:
        made.append(real_plan(*args))
        return made[-1]

    def sql(*args: Any, **kwargs: Any) -> Any:
        made.append(real_sql(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pg_store, "plan_names", plan)
    monkeypatch.setattr(pg_store, "search_names_sql", sql)
    for n in QUERIES[::5]:
        params = random_name_query(n, data)
        made.clear()
        all_ids(postgres, params)
        keys_only = made[1][2] if len(made) > 1 else None
        for shape in name_plan_shapes(made[0], parse_query(params), keys_only):
            seen[shape] = seen.get(shape, 0) + 1
    wanted = {
        "one ordered range",
        "ranges merged",
        "wildcard expanded to ranges",
        "filtered by other terms",
        "filtered by a wildcard",
        "names index alone",
        "joined to recordings",
    }
    assert wanted <= set(seen), seen


def exact_number_and_name_queries(data: list[dict[str, Any]]) -> list[dict[str, str]]:
    """An exact caller or dialed number with one of its recordings' names, in windows around
    that recording: on PostgreSQL the number's range and the name's are merged."""
    queries = []
    for doc in data[::37]:
        names = [
            e["contact"][key]
            for e in doc.get("eventHistory", [])
            for key in ("userName", "firstName")
            if e.get("contact", {}).get(key)
        ]
        if not names or not doc.get("stopTime"):
            continue
        start, stop = parse_instant(doc["startTime"], "s"), parse_instant(doc["stopTime"], "s")
        for key in ("callerPhoneNumber", "dialedPhoneNumber"):
            number = alnum(doc.get(key) or "")
            if not number:
                continue
            queries.append({key: number, "userName": names[0]})
            queries.append(
                {
                    key: number,
                    "userName": names[-1],
                    "startTime": format_instant(start - 86_400_000 * 30),
                    "endTime": format_instant(stop),  # a call ending later is left out
                }
            )
            queries.append({key: number, "userName": names[0], "endTime": str(stop - 1)})
    return queries


def test_exact_numbers_with_names_agree_with_the_reference(
    data: list[dict[str, Any]], stores: tuple[RecordingStore, RecordingStore]
) -> None:
    queries = exact_number_and_name_queries(data)
    assert len(queries) >= 20
    hits = 0
    for store in stores:
        stored = data_docs(store)
        for params in queries:
            assert_name_query_answers(store, stored, params)
            hits += bool(all_ids(store, params))
    assert hits >= len(queries)  # most of them find something: the queries are not trivial


def indexes(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_exact_numbers_with_names_agree_while_the_number_indexes_are_missing(
    data: list[dict[str, Any]], tmp_path: Path
) -> None:
    """During a bulk load into an empty SQLite store the numbers' indexes are dropped: the
    store then plans generically instead of probing a missing index from the names' ranges
    (which would scan the table per entry)."""

    path = tmp_path / "callrec.db"
    store = open_store(f"sqlite:///{path}")
    number_indexes = ("recordings_by_caller_start", "recordings_by_dialed_start")
    try:
        load(store, data)
        with sqlite3.connect(path) as conn:
            assert set(number_indexes) <= indexes(conn)
            for name in number_indexes:
                conn.execute(f"DROP INDEX {name}")
            assert not set(number_indexes) & indexes(conn)
        stored = data_docs(store)
        for params in exact_number_and_name_queries(data):
            assert_name_query_answers(store, stored, params)
    finally:
        store.close()
