"""The ``RecordingStore`` contract, run against every backend.

Every test speaks only the protocol in ``callrec.store``, on each backend of conftest's
``database_url`` fixture (SQLite, PostgreSQL). ``open_another`` opens a *new* store instance
on the test's one fresh database each time it is called: the suite opens several to check
what processes share.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from callrec.demo import demo_recordings
from callrec.errors import GWSError, InvalidParameter, MissingParameter
from callrec.model import merge_recordings, to_store, validate_recording
from callrec.query import RecordingQuery, matches, parse_query
from callrec.store import RecordingStore, User, open_store, search_key
from conftest import local_recording

Opener = Callable[[], RecordingStore]


ALL = RecordingQuery()  # no criterion: every recording of the contact center


@pytest.fixture
def open_another(database_url: str) -> Iterator[Opener]:
    """Opens another store instance on the test's database (one per backend, from conftest);
    all are closed afterwards."""
    opened: list[RecordingStore] = []

    def open_one() -> RecordingStore:
        opened.append(open_store(database_url))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_another: Opener) -> RecordingStore:
    return open_another()


def rec(rec_id: str, **fields: Any) -> dict[str, Any]:
    """A validated recording, as the ops API hands it to ``upsert``."""
    if "startTime" in fields and "stopTime" not in fields:
        fields["stopTime"] = fields["startTime"]
    return validate_recording(local_recording(rec_id, **fields), "cc1")


def at(minute: int) -> str:
    return f"2020-01-01T10:{minute:02d}:00.000+0000"


def saved(store: RecordingStore, ccid: str, *docs: dict[str, Any]) -> list[dict[str, Any]]:
    outcomes = store.upsert(ccid, list(docs))
    assert not [o for o in outcomes if isinstance(o, GWSError)]
    return outcomes  # type: ignore[return-value]


def ids(docs: list[dict[str, Any]]) -> list[str]:
    return [d["id"] for d in docs]


def contact(user: str, first: str = "", last: str = "") -> dict[str, Any]:
    return {
        "event": "Joined",
        "contact": {"type": "Agent", "userName": user, "firstName": first, "lastName": last},
    }


# --------------------------------------------------------------------------- get / upsert


def test_get_of_an_unknown_recording_is_none(store: RecordingStore) -> None:
    assert store.get("cc1", "nope") is None


def test_upsert_creates_and_returns_the_stored_document(store: RecordingStore) -> None:
    incoming = rec("rec-1", callType="Inbound", custom={"a": [1, None]})
    [doc] = store.upsert("cc1", [incoming])
    assert doc == merge_recordings(None, incoming)
    assert store.get("cc1", "rec-1") == doc


def test_load_writes_prepared_recordings_and_merges_those_stored(
    store: RecordingStore,
) -> None:
    stored_first = rec("exists", eventHistory=[contact("ann")])
    saved(store, "cc1", stored_first)
    later = rec("exists", startTime=at(5), eventHistory=[contact("bob")])
    fresh = rec("fresh", callType="Inbound")
    no_start = rec("no-start")
    del no_start["startTime"], no_start["stopTime"]
    outcomes = store.load(
        "cc1", [to_store(None, fresh), to_store(None, later), no_start, to_store(None, fresh)]
    )
    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], MissingParameter)
    assert outcomes[3] is None  # the same recording twice in a batch merges with itself
    assert store.get("cc1", "fresh") == merge_recordings(None, fresh)
    assert store.get("cc1", "exists") == merge_recordings(
        merge_recordings(None, stored_first), later
    )
    assert ids(store.search("cc1", parse_query({"userName": "bob"}), limit=5)) == ["exists"]
    assert ids(store.search("cc1", parse_query({"userName": "ann"}), limit=5)) == ["exists"]
    assert store.get("cc1", "no-start") is None


def test_upsert_of_nothing_is_a_no_op(store: RecordingStore) -> None:
    assert store.upsert("cc1", []) == []
    assert store.search("cc1", ALL, limit=10) == []


def test_upsert_twice_merges(store: RecordingStore) -> None:
    first = rec(
        "rec-1",
        callType="Inbound",
        mediaFiles=[
            {
                "mediaId": "a.mp3",
                "size": "1",
                "mediaDescriptor": {"storage": "local", "path": "cc1/rec-1/a.mp3"},
            }
        ],
    )
    second = validate_recording(
        {
            "id": "rec-1",
            "region": "usw1",
            "callType": "Outbound",
            "startTime": "2013-05-17T19:00:00Z",
            "mediaFiles": [{"mediaId": "a.mp3", "duration": "12"}, {"mediaId": "b.mp3"}],
            "eventHistory": [contact("ann@example.com", "Ann")],
        },
        "cc1",
    )
    saved(store, "cc1", first)
    [merged] = saved(store, "cc1", second)
    assert merged == merge_recordings(merge_recordings(None, first), second)
    stored = store.get("cc1", "rec-1")
    assert stored == merged
    assert stored is not None
    assert stored["callType"] == "Outbound"
    assert stored["callerPhoneNumber"] == first["callerPhoneNumber"]
    assert stored["startTime"] == "2013-05-17T19:00:00.000+0000"
    assert stored["stopTime"] == first["stopTime"]
    assert [m["mediaId"] for m in stored["mediaFiles"]] == ["a.mp3", "b.mp3"]
    assert stored["mediaFiles"][0]["mediaDescriptor"]["path"] == "cc1/rec-1/a.mp3"
    assert stored["mediaFiles"][0]["duration"] == "12"
    assert len(stored["eventHistory"]) == 2


def test_upsert_of_the_same_recording_twice_in_one_call_merges_both(store: RecordingStore) -> None:
    one = rec("rec-1", mediaFiles=[{"mediaId": "a.mp3"}])
    two = rec("rec-1", mediaFiles=[{"mediaId": "b.mp3"}], callType="X")
    outcomes = saved(store, "cc1", one, two)
    assert [m["mediaId"] for m in outcomes[1]["mediaFiles"]] == ["a.mp3", "b.mp3"]
    assert store.get("cc1", "rec-1") == outcomes[1]


def test_upsert_returns_per_item_errors_and_writes_the_others(store: RecordingStore) -> None:
    saved(store, "cc1", rec("exists", startTime=at(30), stopTime=None))
    no_start = rec("no-start")
    del no_start["startTime"], no_start["stopTime"]
    # Valid alone, but merged with what is stored the stop precedes the start.
    backwards = rec("exists", startTime=at(40), stopTime=at(20))
    good = [rec("good-1"), rec("good-2", callType="Inbound")]
    outcomes = store.upsert("cc1", [good[0], no_start, backwards, good[1]])
    assert len(outcomes) == 4
    assert isinstance(outcomes[1], MissingParameter)
    assert outcomes[1].status_code == 1
    assert isinstance(outcomes[2], InvalidParameter)
    assert outcomes[2].status_code == 2
    for outcome, incoming in zip((outcomes[0], outcomes[3]), good, strict=True):
        assert outcome == merge_recordings(None, incoming)
        assert store.get("cc1", incoming["id"]) == outcome
    assert store.get("cc1", "no-start") is None
    existing = store.get("cc1", "exists")
    assert existing is not None
    assert "stopTime" not in existing
    assert ids(store.search("cc1", ALL, limit=10)) == ["good-1", "good-2", "exists"]


def test_upsert_is_visible_to_another_instance(open_another: Opener) -> None:
    writer, reader = open_another(), open_another()
    [doc] = saved(writer, "cc1", rec("rec-1"))
    assert reader.get("cc1", "rec-1") == doc
    assert reader.search("cc1", ALL, limit=5) == [doc]


def test_data_survives_reopening(open_another: Opener) -> None:
    first = open_another()
    [doc] = saved(first, "cc1", rec("rec-1"))
    first.put_user(User("alice", "hash", "admin", "cc1"))
    first.close()
    again = open_another()
    assert again.get("cc1", "rec-1") == doc
    assert again.get_user("alice") == User("alice", "hash", "admin", "cc1")


def test_concurrent_merges_of_one_recording_lose_nothing(open_another: Opener) -> None:
    stores = [open_another(), open_another()]
    saved(stores[0], "cc1", rec("shared"))

    def merge(n: int) -> None:
        incoming = rec(
            "shared",
            mediaFiles=[{"mediaId": f"m{n}.wav"}],
            eventHistory=[contact(f"user{n}")],
        )
        assert not isinstance(stores[n % 2].upsert("cc1", [incoming])[0], GWSError)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(merge, range(64)))
    doc = stores[1].get("cc1", "shared")
    assert doc is not None
    assert {m["mediaId"] for m in doc["mediaFiles"]} == {f"m{n}.wav" for n in range(64)}
    users = {e["contact"]["userName"] for e in doc["eventHistory"]}
    assert {f"user{n}" for n in range(64)} <= users


# --------------------------------------------------------------------------- tenancy, regions


def test_the_same_id_in_two_contact_centers_is_two_recordings(store: RecordingStore) -> None:
    [one] = saved(store, "cc1", rec("same", callerPhoneNumber="111"))
    [two] = saved(store, "cc2", rec("same", callerPhoneNumber="222", callType="Other"))
    assert store.get("cc1", "same") == one
    assert store.get("cc2", "same") == two
    assert "callType" not in one
    assert store.get("cc3", "same") is None
    assert store.search("cc1", ALL, limit=10) == [one]
    assert store.search("cc2", parse_query({"callerPhoneNumber": "111"}), limit=10) == []
    # A merge in one contact center leaves the other alone.
    saved(store, "cc1", rec("same", callerPhoneNumber="333"))
    assert store.get("cc2", "same") == two
    assert store.delete("cc1", "same") is not None
    assert store.get("cc1", "same") is None
    assert store.get("cc2", "same") == two
    assert {(c, d["id"]) for c, d in store.iter_recordings()} == {("cc2", "same")}


def test_region_filters_get_and_search(store: RecordingStore) -> None:
    saved(store, "cc1", rec("west", region="usw1"), rec("east", region="use1", startTime=at(1)))
    assert ids(store.search("cc1", ALL, limit=10)) == ["west", "east"]
    assert ids(store.search("cc1", ALL, limit=10, region="usw1")) == ["west"]
    assert ids(store.search("cc1", ALL, limit=10, region="use1")) == ["east"]
    assert store.search("cc1", ALL, limit=10, region="euw1") == []
    assert store.get("cc1", "west", region="usw1") is not None
    assert store.get("cc1", "west", region="use1") is None
    assert store.get("cc1", "west") is not None


def test_a_merge_that_changes_the_region_moves_the_recording(store: RecordingStore) -> None:
    saved(store, "cc1", rec("r", region="usw1"))
    saved(store, "cc1", rec("r", region="euw1"))
    assert store.search("cc1", ALL, limit=10, region="usw1") == []
    assert ids(store.search("cc1", ALL, limit=10, region="euw1")) == ["r"]
    assert store.get("cc1", "r", region="usw1") is None


# --------------------------------------------------------------------------- search order, paging


@pytest.fixture
def ordered_store(store: RecordingStore) -> RecordingStore:
    # Inserted in shuffled order; several share a start time, so the id breaks the tie.
    docs = [
        rec(f"t{m:02d}-{suffix}", startTime=at(m), stopTime=at(m + 1))
        for m in range(0, 20, 2)
        for suffix in "cab"
    ]
    random.Random(3).shuffle(docs)
    saved(store, "cc1", *docs[:10])
    saved(store, "cc1", *docs[10:])
    return store


EXPECTED_ORDER = [f"t{m:02d}-{s}" for m in range(0, 20, 2) for s in "abc"]


def test_search_sorts_by_start_time_then_id(ordered_store: RecordingStore) -> None:
    found = ordered_store.search("cc1", ALL, limit=100)
    assert ids(found) == EXPECTED_ORDER
    assert (
        ids(ordered_store.search("cc1", parse_query({"startTime": "0"}), limit=100))
        == EXPECTED_ORDER
    )


def test_search_orders_by_instant_not_by_text(store: RecordingStore) -> None:
    # Far apart in time, so that a text sort of anything but the instant would differ.
    saved(
        store,
        "cc1",
        rec("z-early", startTime="1999-12-31T23:59:59.999Z", stopTime="2000-01-01T00:00:00Z"),
        rec("a-late", startTime="2000-01-01T00:00:00.001Z", stopTime="2000-01-01T00:00:01Z"),
        rec("m-pre-epoch", startTime="1969-07-20T20:17:40Z", stopTime="1969-07-20T20:18:00Z"),
    )
    assert ids(store.search("cc1", ALL, limit=10)) == ["m-pre-epoch", "z-early", "a-late"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 29, 30, 31, 1000])
def test_search_limit(ordered_store: RecordingStore, limit: int) -> None:
    assert ids(ordered_store.search("cc1", ALL, limit=limit)) == EXPECTED_ORDER[:limit]


@pytest.mark.parametrize("page", [1, 2, 4, 29])
def test_keyset_paging_visits_every_recording_once(
    ordered_store: RecordingStore, page: int
) -> None:
    seen: list[str] = []
    after = None
    while batch := ordered_store.search("cc1", ALL, limit=page, after=after):
        assert len(batch) <= page
        seen += ids(batch)
        after = search_key(batch[-1])
    assert seen == EXPECTED_ORDER


@pytest.mark.parametrize(
    ("after", "first"),
    [
        ((1577872800000, "t00-a"), "t00-b"),  # 10:00 exactly, strictly after the id
        ((1577872800000, "t00-bb"), "t00-c"),  # between two ids of one instant
        ((1577872800000, ""), "t00-a"),
        ((1577872800000, "zzz"), "t02-a"),
        ((1577872800001, ""), "t02-a"),  # between two instants
        ((0, ""), "t00-a"),
        ((1577872800000 + 18 * 60_000, "t18-c"), None),
    ],
)
def test_search_after_is_strictly_after(
    ordered_store: RecordingStore, after: tuple[int, str], first: str | None
) -> None:
    found = ordered_store.search("cc1", ALL, limit=1, after=after)
    assert (ids(found) or [None])[0] == first


def test_paging_is_stable_under_concurrent_inserts(ordered_store: RecordingStore) -> None:
    page = ordered_store.search("cc1", ALL, limit=5)
    after = search_key(page[-1])
    # One recording sorting before the cursor, one after it.
    saved(
        ordered_store,
        "cc1",
        rec("t00-0", startTime=at(0)),
        rec("t99", startTime="2020-01-01T11:00:00Z"),
    )
    rest: list[str] = []
    while batch := ordered_store.search("cc1", ALL, limit=5, after=after):
        rest += ids(batch)
        after = search_key(batch[-1])
    assert ids(page) + rest == [*EXPECTED_ORDER, "t99"]


def test_search_combines_after_region_and_query(store: RecordingStore) -> None:
    docs = [
        rec(
            f"r{n}",
            region="usw1" if n % 2 else "use1",
            startTime=at(n),
            callerPhoneNumber=f"+1650466{n:04d}",
        )
        for n in range(10)
    ]
    saved(store, "cc1", *docs)
    query = parse_query({"callerPhoneNumber": "1650*"})
    found = store.search(
        "cc1", query, limit=2, after=search_key(store.get("cc1", "r3") or {}), region="usw1"
    )
    assert ids(found) == ["r5", "r7"]


# --------------------------------------------------------------------------- query dimensions

CORPUS = [
    rec(
        "kim-early",
        callerPhoneNumber="+1 (650) 466-8888",
        dialedPhoneNumber="+14155551234",
        startTime="2013-05-17T10:00:00Z",
        stopTime="2013-05-17T10:30:00Z",
        eventHistory=[
            {"event": "Joined", "contact": {"type": "External", "phoneNumber": "+16504668888"}},
            contact("kim.lee@example.com", "Kim", "Lee"),
        ],
    ),
    rec(
        "ann-bob",
        callerPhoneNumber="1 650 466 8123",
        dialedPhoneNumber="1-800-555-0100",
        startTime="2013-05-17T11:00:00Z",
        stopTime="2013-05-17T11:45:00Z",
        eventHistory=[
            contact("ann@example.com", "Ann", "Smith"),
            contact("bob@example.com", "Bob", "Straße"),
        ],
    ),
    rec(
        "in-progress",
        callerPhoneNumber="sip:Alice@pbx.example.com",
        dialedPhoneNumber="+14155551234",
        startTime="2013-05-17T12:00:00Z",
        stopTime=None,
        eventHistory=[contact("Alice", "Mary Ann", "Amber")],
    ),
    rec(
        "no-numbers",
        callerPhoneNumber=None,
        dialedPhoneNumber=None,
        startTime="2013-05-18T00:00:00Z",
        stopTime="2013-05-18T00:10:00Z",
        eventHistory=[contact("Éve@example.com", "ÉVE", "Ünal")],
    ),
    rec(
        "late-kim",
        callerPhoneNumber="8522001",
        dialedPhoneNumber="+14160000001",
        startTime="2014-01-01T00:00:00Z",
        stopTime="2014-01-01T00:05:00Z",
        eventHistory=[
            contact("KIM.LEE@example.com", "kim", "lee"),
            contact("eve@example.com", "Eve"),
        ],
    ),
]


@pytest.fixture
def corpus_store(store: RecordingStore) -> RecordingStore:
    saved(store, "cc1", *CORPUS)
    # The same recordings in another contact center must never leak into cc1's answers.
    saved(
        store,
        "other",
        *[
            rec(d["id"], callerPhoneNumber="+16504668888", eventHistory=[contact("kim")])
            for d in CORPUS
        ],
    )
    return store


QUERIES: list[tuple[dict[str, str], list[str]]] = [
    ({"callerPhoneNumber": "+1 (650) 466-8888"}, ["kim-early"]),
    ({"callerPhoneNumber": "16504668888"}, ["kim-early"]),
    ({"callerPhoneNumber": "*4668*"}, ["kim-early", "ann-bob"]),
    ({"callerPhoneNumber": "1650*"}, ["kim-early", "ann-bob"]),
    ({"callerPhoneNumber": "*8888"}, ["kim-early"]),
    ({"callerPhoneNumber": "4668"}, []),
    ({"callerPhoneNumber": "*"}, ["kim-early", "ann-bob", "in-progress", "no-numbers", "late-kim"]),
    ({"callerPhoneNumber": "sip*Alice*"}, ["in-progress"]),
    ({"callerPhoneNumber": "sip*alice*"}, []),  # case-sensitive
    ({"callerPhoneNumber": "1*6*5*0*"}, ["kim-early", "ann-bob"]),
    ({"callerPhoneNumber": "85?2001"}, []),  # ? is not a wildcard
    ({"dialedPhoneNumber": "+1 415 555 1234"}, ["kim-early", "in-progress"]),
    ({"dialedPhoneNumber": "1800*"}, ["ann-bob"]),
    ({"dialedPhoneNumber": "*0001"}, ["late-kim"]),
    (
        {"startTime": "2013-05-17T11:00:00.000+0000"},
        ["ann-bob", "in-progress", "no-numbers", "late-kim"],
    ),
    (
        {"startTime": "1368788400000"},
        ["ann-bob", "in-progress", "no-numbers", "late-kim"],
    ),  # 11:00 ms
    ({"startTime": "1368788400001"}, ["in-progress", "no-numbers", "late-kim"]),
    ({"startTime": "2013-05-18"}, ["no-numbers", "late-kim"]),
    ({"startTime": "0"}, ["kim-early", "ann-bob", "in-progress", "no-numbers", "late-kim"]),
    ({"endTime": "2013-05-17T11:45:00Z"}, ["kim-early", "ann-bob"]),  # inclusive
    ({"endTime": "2013-05-17T11:44:59.999Z"}, ["kim-early"]),
    (
        {"endTime": "2099-01-01"},
        ["kim-early", "ann-bob", "no-numbers", "late-kim"],
    ),  # not in progress
    (
        {"startTime": "2013-05-17T10:30:00Z", "endTime": "2013-05-18T00:10:00Z"},
        ["ann-bob", "no-numbers"],
    ),
    ({"userName": "kim"}, ["kim-early", "late-kim"]),
    ({"userName": "KIM.LEE@EXAMPLE.COM"}, ["kim-early", "late-kim"]),
    ({"userName": "ki"}, []),
    ({"userName": "ki*"}, ["kim-early", "late-kim"]),
    ({"userName": "Ann Eve"}, ["ann-bob", "late-kim"]),
    ({"userName": "Ann AND Bob"}, ["ann-bob"]),
    ({"userName": "Kim AND Eve"}, ["late-kim"]),
    ({"userName": "Ann Kim AND Eve"}, ["ann-bob", "late-kim"]),
    ({"userName": "Mary"}, []),
    ({"userName": "Mary*"}, ["in-progress"]),
    ({"userName": "mary ann"}, ["ann-bob"]),  # two alternatives, neither is "Mary Ann"
    ({"userName": "Alice AND Amber"}, ["in-progress"]),
    ({"userName": "STRASSE"}, ["ann-bob"]),
    ({"userName": "éve"}, ["no-numbers"]),
    ({"userName": "ÉVE@EXAMPLE.COM"}, ["no-numbers"]),
    ({"userName": "ünal"}, ["no-numbers"]),
    ({"userName": "*"}, ["kim-early", "ann-bob", "in-progress", "no-numbers", "late-kim"]),
    ({"userName": "kim", "callerPhoneNumber": "8522001"}, ["late-kim"]),
    ({"userName": "kim", "startTime": "2013-06-01", "endTime": "2013-12-31"}, []),
    ({"userName": "nobody"}, []),
]


@pytest.mark.parametrize(("params", "expected"), QUERIES, ids=[str(p) for p, _ in QUERIES])
def test_every_query_dimension(
    corpus_store: RecordingStore, params: dict[str, str], expected: list[str]
) -> None:
    query = parse_query(params)
    found = corpus_store.search("cc1", query, limit=100)
    assert ids(found) == expected
    # The reference matcher agrees on every stored document.
    stored = [d for c, d in corpus_store.iter_recordings("cc1")]
    reference = sorted((d for d in stored if matches(query, d)), key=search_key)
    assert ids(reference) == expected


def test_search_agrees_with_the_reference_matcher_on_demo_data(store: RecordingStore) -> None:
    docs = [validate_recording(d, "demo") for d in demo_recordings(300, media=False, ccid="demo")]
    saved(store, "demo", *docs)
    stored = sorted((d for _, d in store.iter_recordings("demo")), key=search_key)
    first = stored[0]
    caller = "".join(c for c in first["callerPhoneNumber"] if c.isalnum())
    name = first["eventHistory"][1]["contact"]["lastName"]
    for params in (
        {"callerPhoneNumber": f"*{caller[2:6]}*"},
        {"dialedPhoneNumber": "1*"},
        {"userName": f"{name} kim*"},
        {"userName": "*a* AND *e*"},
        {"startTime": stored[100]["startTime"], "endTime": stored[200]["startTime"]},
    ):
        query = parse_query(params)
        expected = sorted((d for d in stored if matches(query, d)), key=search_key)
        assert expected, params
        assert ids(store.search("demo", query, limit=1000)) == ids(expected), params


# --------------------------------------------------------------------------- index maintenance


def test_a_contact_added_by_a_merge_becomes_searchable(store: RecordingStore) -> None:
    saved(store, "cc1", rec("r", eventHistory=[contact("kim@example.com", "Kim")]))
    zed = parse_query({"userName": "Zed"})
    assert store.search("cc1", zed, limit=10) == []
    saved(store, "cc1", rec("r", eventHistory=[contact("zed@example.com", "Zed")]))
    assert ids(store.search("cc1", zed, limit=10)) == ["r"]
    assert ids(store.search("cc1", parse_query({"userName": "Kim"}), limit=10)) == ["r"]
    assert ids(store.search("cc1", parse_query({"userName": "Kim AND Zed"}), limit=10)) == ["r"]


def test_merged_numbers_and_times_are_reindexed(store: RecordingStore) -> None:
    saved(
        store,
        "cc1",
        rec(
            "r", callerPhoneNumber="111", dialedPhoneNumber="222", startTime=at(30), stopTime=at(40)
        ),
    )
    saved(
        store,
        "cc1",
        rec(
            "r", callerPhoneNumber="333", dialedPhoneNumber="444", startTime=at(10), stopTime=at(50)
        ),
    )

    def found(params: dict[str, str]) -> list[str]:
        return ids(store.search("cc1", parse_query(params), limit=10))

    assert found({"callerPhoneNumber": "111"}) == []
    assert found({"callerPhoneNumber": "333"}) == ["r"]
    assert found({"dialedPhoneNumber": "222"}) == []
    assert found({"dialedPhoneNumber": "444"}) == ["r"]
    assert found({"startTime": at(20)}) == []
    assert found({"startTime": at(10)}) == ["r"]
    assert found({"endTime": at(40)}) == []
    assert found({"endTime": at(50)}) == ["r"]


def test_a_recording_finished_by_a_merge_matches_end_time(store: RecordingStore) -> None:
    saved(store, "cc1", rec("r", stopTime=None))
    query = parse_query({"endTime": "2099-01-01"})
    assert store.search("cc1", query, limit=10) == []
    saved(store, "cc1", rec("r"))
    assert ids(store.search("cc1", query, limit=10)) == ["r"]


# --------------------------------------------------------------------------- delete


def test_delete_returns_the_document_and_removes_it_everywhere(store: RecordingStore) -> None:
    [doc] = saved(store, "cc1", rec("r", eventHistory=[contact("kim@example.com", "Kim")]))
    saved(store, "cc1", rec("other", callerPhoneNumber="123", eventHistory=[]))
    assert store.delete("cc1", "r") == doc
    assert store.get("cc1", "r") is None
    assert ids(store.search("cc1", ALL, limit=10)) == ["other"]
    assert store.search("cc1", parse_query({"userName": "kim"}), limit=10) == []
    assert store.search("cc1", parse_query({"callerPhoneNumber": "16504668888"}), limit=10) == []
    assert [d["id"] for _, d in store.iter_recordings()] == ["other"]
    assert store.delete("cc1", "r") is None


def test_a_deleted_recording_created_again_starts_afresh(store: RecordingStore) -> None:
    saved(
        store,
        "cc1",
        rec(
            "r", eventHistory=[contact("kim@example.com", "Kim")], mediaFiles=[{"mediaId": "a.mp3"}]
        ),
    )
    store.delete("cc1", "r")
    [again] = saved(store, "cc1", rec("r", eventHistory=[contact("zed@example.com", "Zed")]))
    assert again["mediaFiles"] == []
    assert [e["contact"]["userName"] for e in again["eventHistory"]] == ["zed@example.com"]
    assert store.search("cc1", parse_query({"userName": "kim"}), limit=10) == []
    assert ids(store.search("cc1", parse_query({"userName": "zed"}), limit=10)) == ["r"]


def test_delete_of_an_unknown_recording_is_none(store: RecordingStore) -> None:
    assert store.delete("cc1", "nope") is None


# --------------------------------------------------------------------------- iter_recordings


def test_iter_recordings_yields_every_recording_once(store: RecordingStore) -> None:
    cc1 = [validate_recording(d, "cc1") for d in demo_recordings(2100, ccid="cc1", media=False)]
    cc2 = [validate_recording(d, "cc2") for d in demo_recordings(50, ccid="cc2", media=False)]
    for start in range(0, len(cc1), 700):
        saved(store, "cc1", *cc1[start : start + 700])
    saved(store, "cc2", *cc2)
    everything = list(store.iter_recordings())
    assert len(everything) == 2150
    assert {(c, d["id"]) for c, d in everything} == {("cc1", d["id"]) for d in cc1} | {
        ("cc2", d["id"]) for d in cc2
    }
    only_cc2 = list(store.iter_recordings("cc2"))
    assert only_cc2
    assert all(c == "cc2" for c, _ in only_cc2)
    assert sorted(d["id"] for _, d in only_cc2) == sorted(d["id"] for d in cc2)
    by_id = {d["id"]: d for _, d in only_cc2}
    assert all(by_id[d["id"]] == merge_recordings(None, d) for d in cc2)
    assert list(store.iter_recordings("nobody")) == []


# --------------------------------------------------------------------------- users


def test_users(store: RecordingStore) -> None:
    assert store.get_user("alice") is None
    assert store.list_users() == []
    alice = User("alice", "$argon2id$h1", "admin", "cc1", "Alice", "Tester")
    ops = User("recorder", "$argon2id$h2", "ops")
    bob = User("bob", "$argon2id$h3", "agent", "cc2")
    for user in (alice, ops, bob):
        store.put_user(user)
    assert store.get_user("alice") == alice
    assert store.get_user("recorder") == ops
    assert store.get_user("recorder").ccid is None  # type: ignore[union-attr]
    assert store.get_user("Alice") is None  # names are case-sensitive
    assert store.list_users() == [alice, bob, ops]
    replaced = User("alice", "$argon2id$h4", "supervisor", "cc3")
    store.put_user(replaced)
    assert store.get_user("alice") == replaced
    assert len(store.list_users()) == 3
    assert store.delete_user("alice") is True
    assert store.delete_user("alice") is False
    assert store.get_user("alice") is None
    assert store.list_users() == [bob, ops]


# --------------------------------------------------------------------------- secret, ping


def test_secret_is_stable_and_per_name(store: RecordingStore) -> None:
    csrf = store.secret("csrf")
    assert isinstance(csrf, bytes)
    assert len(csrf) >= 16
    assert store.secret("csrf") == csrf
    assert store.secret("auth-cache") != csrf


def test_secret_survives_reopening(open_another: Opener) -> None:
    first = open_another()
    value = first.secret("csrf")
    first.close()
    assert open_another().secret("csrf") == value


def test_secret_is_shared_by_instances_on_one_database(open_another: Opener) -> None:
    stores = [open_another() for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def first_use(store: RecordingStore) -> bytes:
        barrier.wait()
        return store.secret("race")

    with ThreadPoolExecutor(len(stores)) as pool:
        values = list(pool.map(first_use, stores))
    assert len(set(values)) == 1
    assert open_another().secret("race") == values[0]


def test_ping(store: RecordingStore) -> None:
    assert store.ping() is None
