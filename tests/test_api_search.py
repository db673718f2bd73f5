"""HTTP tests of GET /api/v2/recordings: SPEC §2/§3 search semantics, paging, mediaUri, regions."""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.query import matches, parse_query
from conftest import PASSWORD, basic, local_recording

SEARCH = "/api/v2/recordings"
OPS_POST = "/api/v2/ops/contact-centers/{ccid}/recordings"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 2013-05-17T19:45:32.000Z, the seed's example instant.
T0 = 1_368_819_932_000
LINK_RE = re.compile(r'<([^>]+)>;\s*rel="next"')
HIDDEN_KEYS = ("mediaDescriptor", "originalMediaDescriptor")
FIELD_ORDER = (
    "id",
    "callerPhoneNumber",
    "dialedPhoneNumber",
    "startTime",
    "stopTime",
    "mediaFiles",
    "eventHistory",
    "region",
    "callType",
)


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def iso(ms: int) -> str:
    """Epoch ms in the SPEC output format, computed independently of callrec."""
    t = EPOCH + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def contact(
    user_name: str | None = None, first: str | None = None, last: str | None = None
) -> dict[str, Any]:
    person: dict[str, Any] = {"type": "Agent"}
    for key, value in (("userName", user_name), ("firstName", first), ("lastName", last)):
        if value is not None:
            person[key] = value
    return {"occurredAt": "2013-05-17T19:45:40.000+0000", "event": "Joined", "contact": person}


def rec(
    rec_id: str,
    start: int = T0,
    stop: int | None = None,
    *,
    in_progress: bool = False,
    caller: str | None = "+1 (650) 466-8888",
    dialed: str | None = "+14155551234",
    people: list[tuple[str | None, str | None, str | None]] | None = None,
    region: str = "usw1",
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": rec_id, "region": region, "startTime": iso(start)}
    if not in_progress:
        doc["stopTime"] = iso(stop if stop is not None else start + 60_000)
    if caller is not None:
        doc["callerPhoneNumber"] = caller
    if dialed is not None:
        doc["dialedPhoneNumber"] = dialed
    doc["eventHistory"] = [contact(*p) for p in (people or [])]
    doc["mediaFiles"] = []
    doc.update(extra)
    return doc


def post(client: TestClient, docs: Any, ccid: str = "cc1") -> None:
    response = client.post(OPS_POST.format(ccid=ccid), json=docs, headers=basic("recorder"))
    assert response.status_code == 200, response.text
    assert response.json() == {"statusCode": 0}


def get_search(client: TestClient, params: Any, user: str = "alice", path: str = SEARCH) -> Any:
    return client.get(path, params=params, headers=basic(user))


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statusCode"] == 0
    return [r["id"] for r in body["recordings"]]


def search_ids(client: TestClient, params: Any, user: str = "alice") -> list[str]:
    return ids_of(get_search(client, params, user))


def assert_error(response: Any, http_status: int, status_code: int) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == status_code
    assert isinstance(body["statusMessage"], str)


def next_link(response: Any) -> str | None:
    header = response.headers.get("link")
    if header is None:
        return None
    match = LINK_RE.search(header)
    assert match, header
    return match.group(1)


def walk(client: TestClient, params: Any, user: str = "alice") -> tuple[list[str], int]:
    """All ids over every page, following Link headers; and the number of pages."""
    response = get_search(client, params, user)
    seen = ids_of(response)
    pages = 1
    while (link := next_link(response)) is not None:
        response = client.get(link, headers=basic(user))
        seen += ids_of(response)
        pages += 1
        assert pages < 1000
    return seen, pages


def expected_order(docs: list[dict[str, Any]]) -> list[str]:
    def key(doc: dict[str, Any]) -> tuple[datetime, str]:
        return datetime.strptime(doc["startTime"], "%Y-%m-%dT%H:%M:%S.%f%z"), doc["id"]

    return [d["id"] for d in sorted(docs, key=key)]


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("+1 (650) 466-8888", True),
        ("+16504668888", True),
        ("16504668888", True),
        ("1-650-466-8888", True),
        ("*4668*", True),
        ("1650*", True),
        ("*8888", True),
        ("**8888", True),
        ("1*6*5*0*4*6*6*8*8*8*8", True),
        ("*1*0*8*", True),
        ("16*50*46*68*888", True),
        ("*(650)*", True),
        ("4668", False),
        ("1650", False),
        ("6504668888", False),
        ("16504668888*9", False),
        ("*3*", False),
        ("1*6*5*0*4*6*6*8*8*8*8*8", False),
    ],
)
def test_caller_phone_number_normalised_with_wildcards(
    client: TestClient, value: str, found: bool
) -> None:
    post(client, [rec("hit", caller="+1 (650) 466-8888"), rec("miss", caller="+44 20 7946 0000")])
    assert search_ids(client, {"callerPhoneNumber": value}) == (["hit"] if found else [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+14155551234", ["a"]),
        ("(415) 555-1234", ["b"]),
        ("*4155551234", ["a", "b"]),
        ("*555*", ["a", "b"]),
        ("1415*", ["a"]),
        ("1 415 555 1234", ["a"]),
    ],
)
def test_dialed_phone_number_normalised_both_sides(
    client: TestClient, value: str, expected: list[str]
) -> None:
    post(client, [rec("a", dialed="+1 415.555.1234"), rec("b", T0 + 1, dialed="(415) 555-1234")])
    assert search_ids(client, {"dialedPhoneNumber": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sip:Alice@example.com", ["sip"]),
        ("sipAliceexamplecom", ["sip"]),
        ("sip:alice@example.com", []),
        ("SIP:ALICE@EXAMPLE.COM", []),
        ("*Alice*", ["sip"]),
        ("*alice*", []),
        ("sip*com", ["sip"]),
        ("*Bob", ["bob"]),
        ("*bob", []),
    ],
)
def test_phone_numbers_are_case_sensitive_including_sip_letters(
    client: TestClient, value: str, expected: list[str]
) -> None:
    post(
        client,
        [
            rec("sip", caller="sip:Alice@example.com"),
            rec("bob", T0 + 1, caller="sip:Bob"),
        ],
    )
    assert search_ids(client, {"callerPhoneNumber": value}) == expected


def test_lone_star_matches_recordings_without_a_number(client: TestClient) -> None:
    post(client, [rec("other", T0 - 1, caller="+44 20 7946 0000")])
    assert search_ids(client, {"callerPhoneNumber": "*"}) == ["other"]
    post(client, [rec("with", caller="123"), rec("without", T0 + 1, caller=None)])
    assert search_ids(client, {"callerPhoneNumber": "*"}) == ["other", "with", "without"]
    assert search_ids(client, {"callerPhoneNumber": "1*"}) == ["with"]


@pytest.mark.parametrize("name", ["callerPhoneNumber", "dialedPhoneNumber"])
@pytest.mark.parametrize("value", ["", "()-+", " ", "+ - ( ) .", "é", "ﾟ"])
def test_phone_value_normalising_to_nothing_is_invalid(
    client: TestClient, name: str, value: str
) -> None:
    assert_error(get_search(client, {name: value}), 400, 2)


# --------------------------------------------------------------------------- userName

NAMED = [
    rec("r-alice", T0 + 1, people=[("alice.smith@example.com", "Alice", "Smith")]),
    rec("r-amber", T0 + 2, people=[("amber@example.com", "Amber", "Jones")]),
    rec(
        "r-both",
        T0 + 3,
        people=[("a1@example.com", "Alice", "Brown"), ("a2@example.com", "Amber", "Gray")],
    ),
    rec("r-bobeve", T0 + 4, people=[(None, "Bob", "Stone"), (None, "Eve", "Stone")]),
    rec("r-bob", T0 + 5, people=[(None, "Bob", "Marley")]),
    rec("r-ann", T0 + 6, people=[("ann@example.com", "Ann", "Lee")]),
    rec("r-strasse", T0 + 7, people=[(None, "Hans", "Straße")]),
    rec("r-elodie", T0 + 8, people=[(None, "ÉLODIE", "Dubois")]),
    rec("r-maryann", T0 + 9, people=[(None, "Mary Ann", "Evans")]),
    rec("r-zoe", T0 + 10, people=[(None, "Zoë", "Ωmega")]),
    rec("r-spaces", T0 + 11, people=[(None, "  Padded  ", None)]),
    rec("r-and", T0 + 12, people=[(None, "and", "Or")]),
    rec("r-none", T0 + 13, people=[]),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Alice", ["r-alice", "r-both"]),
        ("alice", ["r-alice", "r-both"]),
        ("ALICE", ["r-alice", "r-both"]),
        ("  Alice  ", ["r-alice", "r-both"]),
        ("alice.smith@example.com", ["r-alice"]),
        ("ALICE.SMITH@EXAMPLE.COM", ["r-alice"]),
        ("smith", ["r-alice"]),
        ("Ali", []),
        ("Ali*", ["r-alice", "r-both"]),
        ("*mber", ["r-amber", "r-both"]),
        ("*lic*", ["r-alice", "r-both"]),
        ("a*@example.com", ["r-alice", "r-amber", "r-both", "r-ann"]),
        ("Alice Amber", ["r-alice", "r-amber", "r-both"]),
        ("Alice\tAmber", ["r-alice", "r-amber", "r-both"]),
        ("Alice AND Amber", ["r-both"]),
        ("Alice AND Brown", ["r-both"]),
        ("Alice AND Jones", []),
        ("Ann Bob AND Eve", ["r-bobeve", "r-ann"]),
        ("Bob AND Eve Ann", ["r-bobeve", "r-ann"]),
        ("Bob", ["r-bobeve", "r-bob"]),
        ("Bob AND Stone AND Eve", ["r-bobeve"]),
        ("Alice and Amber", ["r-alice", "r-amber", "r-both", "r-and"]),
        ("and", ["r-and"]),
        ("STRASSE", ["r-strasse"]),
        ("straße", ["r-strasse"]),
        ("élodie", ["r-elodie"]),
        ("E\u0301LODIE", ["r-elodie"]),
        ("ZOË", ["r-zoe"]),
        ("ωMEGA", ["r-zoe"]),
        ("Mary", []),
        ("Mary*", ["r-maryann"]),
        ("Mary*Ann", ["r-maryann"]),
        ("padded", ["r-spaces"]),
        ("Nobody", []),
    ],
)
def test_user_name_grammar(client: TestClient, value: str, expected: list[str]) -> None:
    post(client, NAMED)
    assert search_ids(client, {"userName": value}) == expected


@pytest.mark.parametrize(
    "value", ["", "   ", "AND", "AND Alice", "Alice AND", "Alice AND AND Bob", "Alice AND  "]
)
def test_user_name_invalid(client: TestClient, value: str) -> None:
    post(client, NAMED[:1])
    assert_error(get_search(client, {"userName": value}), 400, 2)


# --------------------------------------------------------------------------- time window


@pytest.fixture
def timed(client: TestClient) -> TestClient:
    post(
        client,
        [
            rec("before", T0 - 1, T0 + 10_000),
            rec("at", T0, T0 + 20_000),
            rec("after", T0 + 1, T0 + 30_000),
            rec("live", T0 + 2, in_progress=True),
            rec("next-day", T0 + 86_400_000, T0 + 86_400_000 + 1),
        ],
    )
    return client


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", ["before", "at", "after", "live", "next-day"]),
        (str(T0), ["at", "after", "live", "next-day"]),
        (str(T0 + 1), ["after", "live", "next-day"]),
        ("2013-05-17T19:45:32.000+0000", ["at", "after", "live", "next-day"]),
        ("2013-05-17T19:45:32Z", ["at", "after", "live", "next-day"]),
        ("2013-05-17T19:45:32.000Z", ["at", "after", "live", "next-day"]),
        ("2013-05-17T21:45:32.000+02:00", ["at", "after", "live", "next-day"]),
        ("2013-05-17T21:45:32+0200", ["at", "after", "live", "next-day"]),
        ("2013-05-17T14:45:32.001-0500", ["after", "live", "next-day"]),
        ("2013-05-17T19:45:31.999Z", ["before", "at", "after", "live", "next-day"]),
        ("2013-05-17", ["before", "at", "after", "live", "next-day"]),
        ("2013-05-18", ["next-day"]),
        ("2013-05-19", []),
    ],
)
def test_start_time_inclusive(timed: TestClient, value: str, expected: list[str]) -> None:
    assert search_ids(timed, {"startTime": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (str(T0 + 10_000), ["before"]),
        (str(T0 + 9_999), []),
        (str(T0 + 20_000), ["before", "at"]),
        ("2013-05-17T19:46:02.000+0000", ["before", "at", "after"]),
        ("2013-05-17T19:46:01.999Z", ["before", "at"]),
        ("2013-05-17", []),
        ("2099-01-01", ["before", "at", "after", "next-day"]),
        ("253402300799999", ["before", "at", "after", "next-day"]),
    ],
)
def test_end_time_inclusive_and_never_in_progress(
    timed: TestClient, value: str, expected: list[str]
) -> None:
    assert search_ids(timed, {"endTime": value}) == expected


def test_unencoded_plus_in_zone_is_read_as_plus(timed: TestClient) -> None:
    # A GWS client sends "+0000" unencoded; it arrives as a space.
    response = timed.get(SEARCH + "?startTime=2013-05-17T19:45:32.000+0000", headers=basic("alice"))
    assert ids_of(response) == ["at", "after", "live", "next-day"]


def test_start_time_0_means_all_even_before_1970(client: TestClient) -> None:
    post(client, [rec("1969", -1, 10_000), rec("epoch", 0, 10_000), rec("at", T0, T0 + 1)])
    assert search_ids(client, {"startTime": "0"}) == ["1969", "epoch", "at"]
    assert search_ids(client, {"startTime": "1970-01-01"}) == ["epoch", "at"]  # an instant
    assert search_ids(client, {"startTime": "1"}) == ["at"]


def test_start_and_end_time_window(timed: TestClient) -> None:
    params = {"startTime": str(T0), "endTime": str(T0 + 20_000)}
    assert search_ids(timed, params) == ["at"]


@pytest.mark.parametrize("name", ["startTime", "endTime"])
@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "2013-13-01",
        "2013-02-30",
        "2013-05-17T19:45",
        "2013-05-17T25:00:00Z",
        "2013-05-17T19:45:32+19:00",
        "2013-05-17T19:45:32.000+0000x",
        "1.5",
        "1e3",
        "17/05/2013",
        "١٣٦٨٨١٩٩٣٢٠٠٠",
        "9" * 200,
        "-" + "9" * 30,
    ],
)
def test_bad_time_values(client: TestClient, name: str, value: str) -> None:
    assert_error(get_search(client, {name: value}), 400, 2)


def test_digits_only_time_is_epoch_ms_not_a_date(timed: TestClient) -> None:
    # 20130517 ms is in January 1970, so everything starts after it.
    assert len(search_ids(timed, {"startTime": "20130517"})) == 5


# --------------------------------------------------------------------------- combinations


def test_parameters_combine_with_and(client: TestClient) -> None:
    def kim(rec_id: str, start: int = T0, **fields: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "caller": "16504668888",
            "dialed": "555",
            "people": [(None, "Kim", "Lee")],
        }
        values.update(fields)
        return rec(rec_id, start, **values)

    post(
        client,
        [
            kim("all"),
            kim("wrong-caller", caller="999"),
            kim("wrong-dialed", dialed="1"),
            kim("wrong-name", people=[(None, "Ann", None)]),
            kim("too-early", T0 - 5),
            kim("too-late", stop=T0 + 10**9),
            kim("live", T0 + 1, in_progress=True),
        ],
    )
    params = {
        "callerPhoneNumber": "*4668*",
        "dialedPhoneNumber": "555",
        "userName": "kim",
        "startTime": str(T0),
        "endTime": str(T0 + 86_400_000),
    }
    assert search_ids(client, params) == ["all"]


def test_unrecognised_parameters_are_ignored(client: TestClient) -> None:
    post(client, [rec("a")])
    assert search_ids(client, {"startTime": "0", "foo": "bar", "sort": "desc"}) == ["a"]


def test_last_of_repeated_parameters_counts(client: TestClient) -> None:
    post(client, [rec("a", caller="111"), rec("b", T0 + 1, caller="222")])
    params = [("callerPhoneNumber", "111"), ("callerPhoneNumber", "222")]
    assert search_ids(client, params) == ["b"]


def test_no_match_is_an_empty_list(client: TestClient) -> None:
    post(client, [rec("a")])
    response = get_search(client, {"callerPhoneNumber": "000"})
    assert response.status_code == 200
    assert response.json() == {"statusCode": 0, "recordings": []}
    assert "link" not in response.headers


def test_search_is_scoped_to_the_callers_contact_center(client: TestClient) -> None:
    post(client, [rec("mine"), rec("shared")], ccid="cc1")
    post(client, [rec("theirs"), rec("shared", caller="999")], ccid="cc2")
    assert search_ids(client, {"startTime": "0"}, "alice") == ["mine", "shared"]
    assert search_ids(client, {"startTime": "0"}, "bob") == ["shared", "theirs"]
    assert search_ids(client, {"callerPhoneNumber": "999"}, "alice") == []
    assert search_ids(client, {"callerPhoneNumber": "999"}, "bob") == ["shared"]


# --------------------------------------------------------------------------- sort and cap


def test_sorted_by_start_time_then_id(client: TestClient) -> None:
    docs = [
        rec("m", T0 + 5),
        rec("z", T0),
        rec("a", T0 + 5),
        rec("b", T0 - 86_400_000),
        rec("c", T0),
        rec("k", T0 + 5),
    ]
    post(client, docs)
    assert search_ids(client, {"startTime": "0"}) == ["b", "c", "z", "a", "k", "m"]


def test_zone_offsets_sort_by_instant_not_by_text(client: TestClient) -> None:
    early = rec("early")
    early["startTime"] = "2013-05-17T23:00:00.000+0500"  # 18:00Z
    late = rec("late")
    late["startTime"] = "2013-05-17T19:00:00.000+0000"  # 19:00Z
    early["stopTime"] = late["stopTime"] = "2013-05-17T20:00:00.000+0000"
    post(client, [late, early])
    response = get_search(client, {"startTime": "0"})
    assert ids_of(response) == ["early", "late"]
    assert response.json()["recordings"][0]["startTime"] == "2013-05-17T18:00:00.000+0000"


def test_at_most_100_results_without_limit(client: TestClient) -> None:
    rng = random.Random(100)
    docs = [rec(f"rec-{i:03d}", T0 + rng.randrange(40) * 1000) for i in range(130)]
    rng.shuffle(docs)
    post(client, docs)
    response = get_search(client, {"startTime": "0"})
    assert ids_of(response) == expected_order(docs)[:100]
    assert next_link(response) is not None


# --------------------------------------------------------------------------- missing / bad


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"limit": "5"},
        {"cursor": "abc"},
        {"limit": "5", "cursor": "abc"},
        {"foo": "bar"},
        {"contactCenterId": "cc1"},
    ],
)
def test_no_recognised_query_parameter_is_status_1(client: TestClient, params: Any) -> None:
    post(client, [rec("a")])
    assert_error(get_search(client, params), 400, 1)


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "abc", "", "1.5", "٣", " 5", "99999999999"])
def test_bad_limit_is_status_2(client: TestClient, limit: str) -> None:
    assert_error(get_search(client, {"startTime": "0", "limit": limit}), 400, 2)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "abc",
        "%%%",
        cursor_of(b"not json"),
        cursor_of(b"[1]"),
        cursor_of(b'[1,"x",3]'),
        cursor_of(b'["x","y"]'),
        cursor_of(b'{"start":1,"id":"x"}'),
        cursor_of(b'[1.5,"x"]'),
        cursor_of(b'[1e400,"x"]'),
        cursor_of(b'[true,"x"]'),
        cursor_of(b'[null,"x"]'),
        cursor_of(b"[1,2]"),
        cursor_of(b'[18446744073709551615,"x"]'),
        cursor_of(b'[-9223372036854775809,"x"]'),
        cursor_of(b'[99999999999999999999999999,"x"]'),
        cursor_of(b"\xff\xfe"),
        cursor_of(b'[0,"\\u0000"]'),  # an id PostgreSQL cannot even compare (it was a 500)
        cursor_of(b'[0,"a/b"]'),
        cursor_of(b'[0,""]'),
    ],
)
def test_bad_cursor_is_status_2(client: TestClient, cursor: str) -> None:
    post(client, [rec("a")])
    assert_error(get_search(client, {"startTime": "0", "cursor": cursor}), 400, 2)


# --------------------------------------------------------------------------- paging


def test_limit_bounds_the_page(client: TestClient) -> None:
    post(client, [rec(f"r{i}", T0 + i) for i in range(5)])
    assert search_ids(client, {"startTime": "0", "limit": "2"}) == ["r0", "r1"]
    assert search_ids(client, {"startTime": "0", "limit": "1000"}) == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize("limit", [1, 3, 7, 10, 11, 100])
def test_walk_all_pages(client: TestClient, limit: int) -> None:
    rng = random.Random(limit)
    docs = [rec(f"p{i:02d}", T0 + rng.randrange(8) * 1000) for i in range(33)]
    post(client, docs)
    seen, pages = walk(client, {"startTime": "0", "limit": str(limit)})
    assert seen == expected_order(docs)
    assert pages == max(1, -(-33 // limit))


def test_walk_more_than_100_without_limit(client: TestClient) -> None:
    docs = [rec(f"w{i:03d}", T0 + (i % 17) * 1000) for i in range(230)]
    post(client, docs)
    seen, pages = walk(client, {"startTime": "0"})
    assert seen == expected_order(docs)
    assert pages == 3


def test_exact_page_has_no_next_link(client: TestClient) -> None:
    post(client, [rec(f"r{i}", T0 + i) for i in range(10)])
    first = get_search(client, {"startTime": "0", "limit": "5"})
    link = next_link(first)
    assert link is not None
    second = client.get(link, headers=basic("alice"))
    assert ids_of(second) == [f"r{i}" for i in range(5, 10)]
    assert next_link(second) is None
    full = get_search(client, {"startTime": "0", "limit": "10"})
    assert next_link(full) is None


def test_link_keeps_query_and_limit(client: TestClient) -> None:
    post(client, [rec(f"r{i}", T0 + i, people=[(None, "Kim", None)]) for i in range(4)])
    params = {"userName": "Kim AND kim", "callerPhoneNumber": "+1 (650)*", "limit": "2"}
    response = get_search(client, params)
    link = next_link(response)
    assert link is not None
    assert link.startswith("http://testserver/api/v2/recordings?")
    query = parse_qs(urlsplit(link).query, keep_blank_values=True)
    assert query["userName"] == ["Kim AND kim"]
    assert query["callerPhoneNumber"] == ["+1 (650)*"]
    assert query["limit"] == ["2"]
    assert len(query["cursor"]) == 1
    assert ids_of(client.get(link, headers=basic("alice"))) == ["r2", "r3"]


def test_paging_is_stable_under_inserts(client: TestClient) -> None:
    base = [rec(f"b{i:02d}", T0 + i * 1000) for i in range(20)]
    post(client, base)
    starts = {d["id"]: T0 + i * 1000 for i, d in enumerate(base)}
    seen: list[str] = []
    response = get_search(client, {"startTime": "0", "limit": "4"})
    seen += ids_of(response)
    inserted_after: list[str] = []
    round_no = 0
    while (link := next_link(response)) is not None:
        round_no += 1
        last_start = starts[seen[-1]]
        before = [
            rec(f"x-early-{round_no}", T0 - round_no * 1000),
            rec(f"a-tie-{round_no}", last_start),  # same startTime, smaller id: before cursor
        ]
        after = [
            rec(f"z-tie-{round_no}", last_start),  # same startTime, bigger id: after cursor
            rec(f"y-late-{round_no}", T0 + 100_000 + round_no),
        ]
        post(client, before + after)
        starts.update({after[0]["id"]: last_start, after[1]["id"]: T0 + 100_000 + round_no})
        inserted_after += [d["id"] for d in after]
        response = client.get(link, headers=basic("alice"))
        seen += ids_of(response)
        assert round_no < 100
    assert len(seen) == len(set(seen)), "duplicates while paging"
    assert {d["id"] for d in base} <= set(seen), "a pre-existing recording was skipped"
    assert set(inserted_after) <= set(seen), "a row inserted after the cursor was skipped"
    assert not any(s.startswith(("x-early", "a-tie")) for s in seen)


def test_ops_search_pages_too(client: TestClient) -> None:
    docs = [rec(f"o{i}", T0 + i) for i in range(7)]
    post(client, docs)
    path = OPS_POST.format(ccid="cc1")
    response = client.get(path, params={"startTime": "0", "limit": "3"}, headers=basic("recorder"))
    seen = ids_of(response)
    while (link := next_link(response)) is not None:
        assert "/api/v2/ops/contact-centers/cc1/recordings?" in link
        response = client.get(link, headers=basic("recorder"))
        seen += ids_of(response)
    assert seen == [f"o{i}" for i in range(7)]


# --------------------------------------------------------------------------- mediaUri


def media_doc(rec_id: str, media_ids: list[str], start: int = T0) -> dict[str, Any]:
    return rec(
        rec_id,
        start,
        mediaFiles=[
            {
                "mediaId": m,
                "type": "audio/mp3",
                "mediaDescriptor": {"storage": "local", "path": f"cc1/secret-dir/{rec_id}/{i}.mp3"},
            }
            for i, m in enumerate(media_ids)
        ],
    )


def assert_external_media(
    recording: dict[str, Any], base: str, rec_id: str, media_ids: list[str]
) -> None:
    assert [m["mediaId"] for m in recording["mediaFiles"]] == media_ids
    for media in recording["mediaFiles"]:
        quoted = quote(media["mediaId"], safe="")
        path = f"/recordings/{rec_id}/play/{quoted}"
        assert media["mediaPath"] == path
        assert media["mediaUri"] == f"{base}/api/v2{path}"
        for key in HIDDEN_KEYS:
            assert key not in media
    assert "secret-dir" not in str(recording)
    assert "storage" not in str(recording)


MEDIA_IDS = ["plain.mp3", "with space.mp3", "é#?%&+.mp3"]


def test_media_uri_substitution_on_get_and_search(client: TestClient) -> None:
    post(client, [media_doc("rec-1", MEDIA_IDS)])
    got = client.get(SEARCH + "/rec-1", headers=basic("alice"))
    assert got.status_code == 200
    assert_external_media(got.json()["recording"], "http://testserver", "rec-1", MEDIA_IDS)
    found = get_search(client, {"startTime": "0"})
    [recording] = found.json()["recordings"]
    assert_external_media(recording, "http://testserver", "rec-1", MEDIA_IDS)
    assert "secret-dir" not in got.text + found.text


def test_a_page_read_again_shows_each_recording_as_it_is_now_and_as_asked(
    client: TestClient,
) -> None:
    # Pages splice recordings rendered for earlier pages: by their stored form, the view
    # and the play URLs' base, never by id alone.
    post(client, [media_doc("rec-1", ["a.mp3"]), media_doc("rec-2", ["b.mp3"], T0 + 1)])
    first = get_search(client, {"startTime": "0"})
    assert get_search(client, {"startTime": "0"}).content == first.content
    assert_external_media(first.json()["recordings"][0], "http://testserver", "rec-1", ["a.mp3"])
    elsewhere = client.get(
        SEARCH, params={"startTime": "0"}, headers={**basic("alice"), "Host": "rec.local:8443"}
    )
    assert_external_media(
        elsewhere.json()["recordings"][0], "http://rec.local:8443", "rec-1", ["a.mp3"]
    )
    ops = client.get(
        OPS_POST.format(ccid="cc1"), params={"startTime": "0"}, headers=basic("recorder")
    )
    [media] = ops.json()["recordings"][0]["mediaFiles"]
    assert media["mediaUri"].endswith("/api/v2/ops/contact-centers/cc1/recordings/rec-1/play/a.mp3")
    assert media["mediaDescriptor"]["path"] == "cc1/secret-dir/rec-1/0.mp3"
    post(client, [rec("rec-1", callType="Outbound")])
    again = get_search(client, {"startTime": "0"}).json()["recordings"]
    assert [r.get("callType") for r in again] == ["Outbound", None]
    assert again[1] == first.json()["recordings"][1]


def test_media_uri_follows_the_request_host(client: TestClient) -> None:
    post(client, [media_doc("rec-1", ["a.mp3"])])
    got = client.get(SEARCH + "/rec-1", headers={**basic("alice"), "Host": "rec.local:8443"})
    assert_external_media(got.json()["recording"], "http://rec.local:8443", "rec-1", ["a.mp3"])


def test_media_uri_for_media_without_bytes(client: TestClient) -> None:
    # Declared but never uploaded: the entry still shows callrec's play URL, nothing else.
    post(client, [rec("rec-1", mediaFiles=[{"mediaId": "x.mp3", "type": "audio/mp3"}])])
    got = client.get(SEARCH + "/rec-1", headers=basic("alice"))
    [media] = got.json()["recording"]["mediaFiles"]
    assert media["mediaUri"] == "http://testserver/api/v2/recordings/rec-1/play/x.mp3"


def test_output_field_order(client: TestClient) -> None:
    doc = local_recording("rec-1", callType="Inbound", extra={"kept": [1, 2]})
    # Shuffle the input order: output order is SPEC §1's.
    post(client, [dict(reversed(list(doc.items())))])
    got = client.get(SEARCH + "/rec-1", headers=basic("alice")).json()["recording"]
    keys = list(got)
    assert keys[: len(FIELD_ORDER)] == list(FIELD_ORDER)
    assert got["extra"] == {"kept": [1, 2]}
    [found] = get_search(client, {"startTime": "0"}).json()["recordings"]
    assert list(found)[: len(FIELD_ORDER)] == list(FIELD_ORDER)


# --------------------------------------------------------------------------- root path


def test_public_url_and_root_path(make_client: Callable[..., TestClient]) -> None:
    app = make_client(root_path="/cloud-web", public_url="https://rec.example.com")
    path = "/cloud-web/api/v2/ops/contact-centers/cc1/recordings"
    docs = [media_doc(f"r{i}", ["a b.mp3"], T0 + i) for i in range(3)]
    response = app.post(path, json=docs, headers=basic("recorder"))
    assert response.json() == {"statusCode": 0}
    assert app.get(SEARCH, params={"startTime": "0"}, headers=basic("alice")).status_code == 404
    got = app.get("/cloud-web/api/v2/recordings/r0", headers=basic("alice"))
    assert got.status_code == 200
    [media] = got.json()["recording"]["mediaFiles"]
    assert (
        media["mediaUri"] == "https://rec.example.com/cloud-web/api/v2/recordings/r0/play/a%20b.mp3"
    )
    assert media["mediaPath"] == "/recordings/r0/play/a%20b.mp3"
    found = app.get(
        "/cloud-web/api/v2/recordings",
        params={"startTime": "0", "limit": "2"},
        headers=basic("alice"),
    )
    assert ids_of(found) == ["r0", "r1"]
    link = next_link(found)
    assert link is not None
    assert link.startswith("https://rec.example.com/cloud-web/api/v2/recordings?")
    rest = link.removeprefix("https://rec.example.com")
    assert ids_of(app.get(rest, headers=basic("alice"))) == ["r2"]
    me = app.get("/cloud-web/api/v2/me", headers=basic("alice"))
    assert me.status_code == 200
    ops_get = app.get(path + "/r0", headers=basic("recorder"))
    [ops_media] = ops_get.json()["recording"]["mediaFiles"]
    assert ops_media["mediaUri"] == (
        "https://rec.example.com/cloud-web/api/v2/ops/contact-centers/cc1/recordings/r0/play/a%20b.mp3"
    )


def test_public_url_without_root_path(make_client: Callable[..., TestClient]) -> None:
    app = make_client(public_url="https://rec.example.com:9443/")
    post(app, [media_doc("r0", ["a.mp3"])])
    got = app.get("/api/v2/recordings/r0", headers=basic("alice"))
    assert_external_media(got.json()["recording"], "https://rec.example.com:9443", "r0", ["a.mp3"])


# --------------------------------------------------------------------------- regions


def test_region_affinity(make_client: Callable[..., TestClient]) -> None:
    app = make_client(region="usw1")
    ops = "/api/v2/ops/contact-centers/cc1/recordings"
    post(app, [rec("here", region="usw1", mediaFiles=[{"mediaId": "a.mp3"}])])
    put = app.put(ops + "/here/media/a.mp3", content=b"0123456789", headers=basic("recorder"))
    assert put.status_code == 200, put.text
    stored = app.get(ops + "/here", headers=basic("recorder")).json()["recording"]
    # "there" points at the same bytes: only its region keeps it from being played.
    descriptor = stored["mediaFiles"][0]["mediaDescriptor"]
    there = rec("there", T0 + 1, region="euw1")
    there["mediaFiles"] = [{"mediaId": "a.mp3", "mediaDescriptor": descriptor}]
    post(app, [there])
    assert search_ids(app, {"startTime": "0"}) == ["here"]
    missing = app.get(SEARCH + "/nowhere", headers=basic("alice"))
    other = app.get(SEARCH + "/there", headers=basic("alice"))
    assert_error(other, 404, 6)
    assert other.json() == missing.json()
    assert app.get(SEARCH + "/here", headers=basic("alice")).status_code == 200
    play = app.get(SEARCH + "/there/play/a.mp3", headers=basic("alice"))
    assert_error(play, 404, 6)
    assert app.get(SEARCH + "/here/play/a.mp3", headers=basic("alice")).content == b"0123456789"
    assert_error(app.get(ops + "/there", headers=basic("recorder")), 404, 6)
    assert ids_of(app.get(ops, params={"startTime": "0"}, headers=basic("recorder"))) == ["here"]


def test_without_region_setting_every_region_is_visible(client: TestClient) -> None:
    post(client, [rec("a", region="usw1"), rec("b", T0 + 1, region="euw1")])
    assert search_ids(client, {"startTime": "0"}) == ["a", "b"]


# --------------------------------------------------------------------------- property


def _random_phone(rng: random.Random) -> str | None:
    if rng.random() < 0.08:
        return None
    if rng.random() < 0.15:
        return "sip:" + rng.choice(["Ab", "ab", "AB", "aB"]) + "@" + rng.choice("xyz")
    digits = "".join(rng.choice("1234") for _ in range(rng.randint(3, 7)))
    decorated = "".join(c + (rng.choice(["", "", " ", "-", "."])) for c in digits)
    return rng.choice(["", "+", "(", "+1 "]) + decorated


NAME_POOL = ["Alice", "Amber", "Bob", "Eve", "Ann", "Kim", "Lee", "Zoë", "Straße", "Élodie"]


def _random_doc(rng: random.Random, i: int) -> dict[str, Any]:
    start = T0 + rng.randrange(30) * 60_000
    people = [
        (
            rng.choice([None, f"{rng.choice(NAME_POOL).lower()}@example.com"]),
            rng.choice(NAME_POOL),
            rng.choice([None, *NAME_POOL]),
        )
        for _ in range(rng.randint(0, 3))
    ]
    return rec(
        f"g{i:02d}",
        start,
        start + rng.randrange(0, 20) * 60_000,
        in_progress=rng.random() < 0.15,
        caller=_random_phone(rng),
        dialed=_random_phone(rng),
        people=people,
    )


def _random_phone_query(rng: random.Random, docs: list[dict[str, Any]], key: str) -> str:
    source = rng.choice(docs).get(key) or "123"
    chars = [c for c in source if c.isalnum()] or ["1"]
    a = rng.randrange(len(chars))
    b = rng.randrange(a, len(chars)) + 1
    piece = "".join(chars[a:b])
    if rng.random() < 0.2:
        piece = piece.swapcase()
    return rng.choice(["", "*"]) + piece + rng.choice(["", "*"])


def _random_name_term(rng: random.Random) -> str:
    name = rng.choice([*NAME_POOL, "nobody"])
    name = rng.choice([name, name.upper(), name.lower()])
    if rng.random() < 0.3:
        name = name[: rng.randint(1, len(name))] + "*"
    if rng.random() < 0.1:
        name = "*" + name[-2:]
    return name


def _random_instant(rng: random.Random) -> str:
    ms = T0 + rng.randrange(-5, 55) * 60_000 + rng.choice([0, 0, -1, 1])
    form = rng.randrange(4)
    if form == 0:
        return str(ms)
    if form == 1:
        return iso(ms)
    if form == 2:
        local = EPOCH + timedelta(milliseconds=ms) + timedelta(hours=2)
        return local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+02:00"
    return rng.choice(["2013-05-17", "2013-05-18", "1970-01-01"])


def _random_query(rng: random.Random, docs: list[dict[str, Any]]) -> dict[str, str]:
    params: dict[str, str] = {}
    while not params:
        if rng.random() < 0.4:
            params["callerPhoneNumber"] = _random_phone_query(rng, docs, "callerPhoneNumber")
        if rng.random() < 0.3:
            params["dialedPhoneNumber"] = _random_phone_query(rng, docs, "dialedPhoneNumber")
        if rng.random() < 0.35:
            params["startTime"] = _random_instant(rng)
        if rng.random() < 0.35:
            params["endTime"] = _random_instant(rng)
        if rng.random() < 0.5:
            groups = [
                " AND ".join(_random_name_term(rng) for _ in range(rng.randint(1, 2)))
                for _ in range(rng.randint(1, 3))
            ]
            params["userName"] = " ".join(groups)
    return params


def test_search_agrees_with_reference_matcher(client: TestClient) -> None:
    rng = random.Random(20130517)
    docs = [_random_doc(rng, i) for i in range(60)]
    post(client, docs)
    by_id = {d["id"]: d for d in docs}
    nonempty = 0
    for _ in range(100):
        params = _random_query(rng, docs)
        query = parse_query(params)
        expected = expected_order([d for d in docs if matches(query, d)])
        got = search_ids(client, {**params, "limit": "1000"})
        assert got == expected, params
        assert all(matches(query, by_id[i]) for i in got)
        nonempty += bool(expected)
    assert nonempty > 20  # the generator exercises real matches, not only empty results
