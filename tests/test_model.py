"""Unit tests for callrec.model and callrec.ingest: validating, merging and resolving recordings."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from callrec.demo import demo_recordings
from callrec.doccodec import unpack
from callrec.errors import GWSError, InvalidParameter, MissingParameter
from callrec.ingest import MAX_DEPTH, as_posted, parse_json, prepare
from callrec.media.local import LocalMediaStore
from callrec.media.locations import Storages
from callrec.model import (
    FIELD_ORDER,
    Stored,
    find_media,
    index_keys,
    merge_recordings,
    merge_stored,
    to_store,
    unchanged,
    validate_recording,
)
from callrec.query import fold_name
from conftest import local_recording

CC = "cc1"


def media(media_id: str = "call.mp3", **fields: Any) -> dict[str, Any]:
    return {"mediaId": media_id, "type": "audio/mp3", **fields}


def event(user: str, what: str = "Joined", at: str = "2013-05-17T19:46:00.000+0000") -> dict:
    return {
        "occurredAt": at,
        "event": what,
        "contact": {"type": "Agent", "userName": user, "firstName": user.title()},
    }


def valid(**fields: Any) -> dict[str, Any]:
    return validate_recording(local_recording(**fields), CC)


def create(**fields: Any) -> dict[str, Any]:
    return merge_recordings(None, valid(**fields))


@pytest.fixture
def storages(tmp_path: Path) -> Storages:
    return Storages({"local": LocalMediaStore(tmp_path / "media")})


# --------------------------------------------------------------------------- validate_recording


@pytest.mark.parametrize(
    ("occurred_at", "said"),
    [("soon", "Invalid eventHistory[1].occurredAt"), (5, "eventHistory[1].occurredAt must be")],
)
def test_a_bad_event_time_is_named_with_its_event(occurred_at: Any, said: str) -> None:
    good = {"occurredAt": "2013-05-17T19:46:00.000+0000", "event": "Joined"}
    body = local_recording(eventHistory=[good, {**good, "occurredAt": occurred_at}])
    with pytest.raises(InvalidParameter) as caught:
        validate_recording(body, CC)
    assert caught.value.message.startswith(said)


def without(key: str) -> dict[str, Any]:
    doc = local_recording()
    del doc[key]
    return doc


def with_media(**fields: Any) -> dict[str, Any]:
    return local_recording(mediaFiles=[{"mediaId": "a.mp3", **fields}])


def with_event(raw: Any) -> dict[str, Any]:
    return local_recording(eventHistory=[raw])


ERRORS: list[tuple[str, Any, int]] = [
    # (case, body, statusCode)
    ("body is a list", [local_recording()], 2),
    ("body is a string", "rec-1", 2),
    ("body is null", None, 2),
    ("id missing", without("id"), 1),
    ("id null", local_recording(id=None), 1),
    ("id empty", local_recording(id=""), 2),
    ("id a number", local_recording(id=42), 2),
    ("id with a slash", local_recording(id="a/b"), 2),
    ("id with a space", local_recording(id="a b"), 2),
    ("id with non-ASCII", local_recording(id="réc"), 2),
    ("id too long", local_recording(id="a" * 129), 2),
    ("region missing", without("region"), 1),
    ("region null", local_recording(region=None), 1),
    ("region a number", local_recording(region=1), 2),
    ("ccid differs from the URL", local_recording(ccid="cc2"), 2),
    ("callerPhoneNumber a number", local_recording(callerPhoneNumber=16504668888), 2),
    ("dialedPhoneNumber a list", local_recording(dialedPhoneNumber=["1"]), 2),
    ("callType an object", local_recording(callType={}), 2),
    ("startTime garbage", local_recording(startTime="yesterday"), 2),
    ("startTime a number", local_recording(startTime=1368819932000), 2),
    ("startTime impossible date", local_recording(startTime="2013-02-30T00:00:00Z"), 2),
    ("startTime without seconds", local_recording(startTime="2013-05-17T19:45Z"), 2),
    ("stopTime garbage", local_recording(stopTime="2013-05-17 19:45"), 2),
    ("stopTime bad zone", local_recording(stopTime="2013-05-17T19:45:32+25:00"), 2),
    ("mediaFiles an object", local_recording(mediaFiles={"mediaId": "a"}), 2),
    ("media file a string", local_recording(mediaFiles=["a.mp3"]), 2),
    ("mediaId missing", local_recording(mediaFiles=[{"type": "audio/mp3"}]), 1),
    ("mediaId a number", with_media(mediaId=7), 2),
    ("mediaId empty", with_media(mediaId=""), 2),
    ("mediaId with /", with_media(mediaId="a/b.mp3"), 2),
    ("mediaId with backslash", with_media(mediaId="a\\b.mp3"), 2),
    ("mediaId with newline", with_media(mediaId="a\nb.mp3"), 2),
    ("mediaId with NUL", with_media(mediaId="a\x00b.mp3"), 2),
    ("mediaId with DEL", with_media(mediaId="a\x7fb.mp3"), 2),
    ("mediaId is .", with_media(mediaId="."), 2),
    ("mediaId is ..", with_media(mediaId=".."), 2),
    ("mediaId too long", with_media(mediaId="a" * 256), 2),
    ("mediaId over 255 bytes", with_media(mediaId="é" * 128), 2),
    (
        "mediaId twice",
        local_recording(mediaFiles=[{"mediaId": "a.mp3"}, {"mediaId": "a.mp3"}]),
        2,
    ),
    ("media startTime garbage", with_media(startTime="noon"), 2),
    ("media stopTime a number", with_media(stopTime=5), 2),
    ("media type a number", with_media(type=3), 2),
    ("media size a number", with_media(size=199296), 2),
    ("media duration a number", with_media(duration=12.5), 2),
    ("media mediaUri a dict", with_media(mediaUri={"u": 1}), 2),
    ("mediaDescriptor a string", with_media(mediaDescriptor="local:/a"), 2),
    ("mediaDescriptor without storage", with_media(mediaDescriptor={"path": "a"}), 1),
    (
        "mediaDescriptor path a number",
        with_media(mediaDescriptor={"storage": "local", "path": 1}),
        2,
    ),
    ("eventHistory an object", local_recording(eventHistory={}), 2),
    ("event a string", with_event("Joined"), 2),
    ("event occurredAt garbage", with_event({"occurredAt": "soon", "event": "Joined"}), 2),
    ("event contact a string", with_event({"event": "Joined", "contact": "Kim"}), 2),
    ("contact userName a number", with_event({"contact": {"userName": 5}}), 2),
    ("contact lastName a list", with_event({"contact": {"lastName": ["Lee"]}}), 2),
]


@pytest.mark.parametrize(("body", "status"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_validate_rejects_with_the_right_status_code(body: Any, status: int) -> None:
    with pytest.raises(GWSError) as caught:
        validate_recording(body, CC)
    assert caught.value.status_code == status
    assert type(caught.value) is (MissingParameter if status == 1 else InvalidParameter)
    assert caught.value.http_status == 400
    assert caught.value.message


@pytest.mark.parametrize(
    "rec_id",
    ["a", "A", "0", "a" * 128, "011AP643CSAPR4FKQGQE31TAES00029V", "a.b_c-d", "-", "_x_", "a..b"],
)
def test_validate_accepts_ids_of_the_id_alphabet(rec_id: str) -> None:
    assert validate_recording(local_recording(id=rec_id), CC)["id"] == rec_id


@pytest.mark.parametrize(
    "media_id",
    [
        "a",
        "call.mp3",
        "a" * 255,
        "é" * 127 + "a",  # 255 bytes
        "callrec.008E0149-12132920.141216184241.mp3",
        "Grüße vom Band.wav",
        "...",
        "a..b",
        "with space & (parens).mp3",
    ],
)
def test_validate_accepts_media_file_names(media_id: str) -> None:
    doc = validate_recording(with_media(mediaId=media_id), CC)
    assert [m["mediaId"] for m in doc["mediaFiles"]] == [media_id]


def test_validate_accepts_a_matching_ccid_and_keeps_it() -> None:
    assert validate_recording(local_recording(ccid=CC), CC)["ccid"] == CC


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2013-05-17T19:45:32.000+0000", "2013-05-17T19:45:32.000+0000"),
        ("2013-05-17T19:45:32Z", "2013-05-17T19:45:32.000+0000"),
        ("2013-05-17T19:45:32.5Z", "2013-05-17T19:45:32.500+0000"),
        ("2013-05-17T19:45:32.123456Z", "2013-05-17T19:45:32.123+0000"),
        ("2013-05-17T21:45:32+0200", "2013-05-17T19:45:32.000+0000"),
        ("2013-05-17T21:45:32.000+02:00", "2013-05-17T19:45:32.000+0000"),
        ("2013-05-17T14:45:32-05:00", "2013-05-17T19:45:32.000+0000"),
        ("2013-05-18T01:15:32.250+05:30", "2013-05-17T19:45:32.250+0000"),
        ("2013-05-17T19:45:32", "2013-05-17T19:45:32.000+0000"),
        ("2013-12-31T23:30:00-01:00", "2014-01-01T00:30:00.000+0000"),
    ],
)
def test_validate_normalises_every_time_to_utc_millis(given: str, stored: str) -> None:
    raw = local_recording(
        startTime=given,
        stopTime=given,
        mediaFiles=[media(startTime=given, stopTime=given)],
        eventHistory=[{"occurredAt": given, "event": "Joined"}],
    )
    doc = validate_recording(raw, CC)
    assert doc["startTime"] == stored
    assert doc["stopTime"] == stored
    assert doc["mediaFiles"][0]["startTime"] == stored
    assert doc["mediaFiles"][0]["stopTime"] == stored
    assert doc["eventHistory"][0]["occurredAt"] == stored


def test_validate_keeps_every_other_field_exactly_as_sent() -> None:
    raw = local_recording(
        callerPhoneNumber="+1 (650) 466-8888",
        callType="Inbound",
        custom={"nested": [1, 2.5, None, True]},
        mediaFiles=[
            media(
                duration="38.376",
                size="153504",
                tenant="Environment",
                parameters={"ani": "8522001"},
                masks=[],
                partitions=["p1"],
                accessgroups=["g"],
                pkcs7="MIAGCSqGSIb3DQEHA6CAMIACAQAxggE",
                extra="kept",
            )
        ],
        eventHistory=[{"event": "Joined", "calluuid": "X1", "contact": {"type": "External"}}],
    )
    doc = validate_recording(copy.deepcopy(raw), CC)
    assert doc == raw


def test_validate_does_not_modify_its_input() -> None:
    raw = local_recording(
        startTime="2013-05-17T19:45:32Z",
        mediaFiles=[media(startTime="2013-05-17T19:45:32Z")],
        eventHistory=[{"occurredAt": "2013-05-17T19:45:32Z", "event": "Joined"}],
    )
    before = copy.deepcopy(raw)
    validate_recording(raw, CC)
    assert raw == before


def test_validate_treats_absent_lists_as_empty() -> None:
    raw = local_recording()
    del raw["mediaFiles"], raw["eventHistory"]
    doc = validate_recording(raw, CC)
    assert doc["mediaFiles"] == []
    assert doc["eventHistory"] == []


def test_validate_leaves_times_absent_when_not_given() -> None:
    raw = local_recording()
    del raw["startTime"], raw["stopTime"]
    doc = validate_recording(raw, CC)
    assert "startTime" not in doc
    assert "stopTime" not in doc


# --------------------------------------------------------------------------- merge_recordings


def test_create_orders_fields_as_the_spec_lists_them() -> None:
    raw = {
        "zzz": 1,
        "callType": "Inbound",
        "region": "usw1",
        "eventHistory": [],
        "mediaFiles": [],
        "stopTime": "2013-05-17T22:15:36Z",
        "startTime": "2013-05-17T19:45:32Z",
        "dialedPhoneNumber": "2",
        "callerPhoneNumber": "1",
        "id": "r",
        "aaa": 2,
    }
    doc = merge_recordings(None, validate_recording(raw, CC))
    assert list(doc) == [*FIELD_ORDER, "zzz", "aaa"]


def test_merge_replaces_the_top_level_fields_given_and_keeps_the_others() -> None:
    first = create(callType="Inbound", note="first", keep="me")
    second = validate_recording(
        {
            "id": "rec-1",
            "region": "euw1",
            "callerPhoneNumber": "+15550000000",
            "callType": "Outbound",
            "note": {"now": "an object"},
        },
        CC,
    )
    merged = merge_recordings(first, second)
    assert merged["region"] == "euw1"
    assert merged["callerPhoneNumber"] == "+15550000000"
    assert merged["callType"] == "Outbound"
    assert merged["note"] == {"now": "an object"}
    assert merged["keep"] == "me"
    assert merged["dialedPhoneNumber"] == first["dialedPhoneNumber"]
    assert merged["startTime"] == first["startTime"]
    assert merged["stopTime"] == first["stopTime"]
    assert merged["eventHistory"] == first["eventHistory"]


def self_merge_cases() -> list[dict[str, Any]]:
    twice = event("kim")
    return [
        *(validate_recording(d, CC) for d in demo_recordings(300, seed=3, ccid=CC)),
        valid(eventHistory=[twice, event("ann"), copy.deepcopy(twice)]),  # an event twice
        valid(mediaFiles=[media(startTime="2013-05-17T19:40:00.000+0000")]),  # widens
        valid(stopTime=None),
        valid(custom={"z": 1, "a": [None, "ü"]}, callType="Inbound", ccid=CC),
    ]


@pytest.mark.parametrize("doc", self_merge_cases())
def test_a_recording_merged_over_itself_is_itself(doc: dict[str, Any]) -> None:
    """Why a store writes nothing for a recording prepared to the very form it holds
    (``model.unchanged``): merging it over itself gives the same stored form back."""
    prepared = to_store(None, doc)
    again = merge_stored(orjson.loads(prepared.blob), prepared)
    assert again.packed == prepared.packed
    assert unchanged(prepared.packed, to_store(None, doc))
    assert not unchanged(to_store(None, valid(callType="Outbound")).packed, prepared)
    assert not unchanged(prepared.doc, prepared)  # a document merged in the batch: merged


def test_merge_does_not_modify_its_arguments() -> None:
    first = create(mediaFiles=[media("a.mp3", size="1")])
    second = valid(mediaFiles=[media("a.mp3", size="2"), media("b.mp3")], eventHistory=[event("x")])
    before = copy.deepcopy((first, second))
    merge_recordings(first, second)
    assert (first, second) == before


def test_merge_upserts_media_files_by_media_id() -> None:
    first = create(mediaFiles=[media("a.mp3", size="1"), media("b.mp3", size="2")])
    second = valid(mediaFiles=[media("b.mp3", size="20"), media("c.mp3", size="3")])
    merged = merge_recordings(first, second)
    assert [(m["mediaId"], m["size"]) for m in merged["mediaFiles"]] == [
        ("a.mp3", "1"),
        ("b.mp3", "20"),
        ("c.mp3", "3"),
    ]


def test_merge_keeps_a_media_location_a_later_post_does_not_give() -> None:
    located = media(
        "a.mp3",
        size="123",
        mediaDescriptor={"storage": "local", "path": "cc1/rec-1/a.mp3"},
    )
    first = create(mediaFiles=[located])
    second = valid(mediaFiles=[media("a.mp3", duration="12523", type="audio/mpeg")])
    [merged_media] = merge_recordings(first, second)["mediaFiles"]
    assert merged_media == {
        "mediaId": "a.mp3",
        "type": "audio/mpeg",
        "size": "123",
        "mediaDescriptor": {"storage": "local", "path": "cc1/rec-1/a.mp3"},
        "duration": "12523",
    }


def test_merge_appends_events_unless_an_identical_one_is_there() -> None:
    kim, ann = event("kim"), event("ann", at="2013-05-17T19:50:00.000+0000")
    first = create(eventHistory=[kim])
    # The same event with its keys in another order is the same event.
    reordered_contact = {**kim, "contact": dict(reversed(kim["contact"].items()))}
    kim_reordered = dict(reversed(reordered_contact.items()))
    assert list(kim_reordered) != list(kim)
    kim_left = event("kim", what="Left")
    merged = merge_recordings(first, valid(eventHistory=[kim_reordered, ann, kim_left, ann]))
    assert merged["eventHistory"] == [kim, ann, kim_left]


def test_merge_keeps_events_that_differ_in_any_field() -> None:
    base = event("kim")
    other_time = event("kim", at="2013-05-17T19:47:00.000+0000")
    extra_field = {**base, "calluuid": "X"}
    merged = merge_recordings(
        create(eventHistory=[base]), valid(eventHistory=[other_time, extra_field])
    )
    assert merged["eventHistory"] == [base, other_time, extra_field]


def test_merge_tells_events_apart_as_json_does() -> None:
    # 1 and 1.0 (and True) are equal in Python but not in JSON: events differing only so are
    # kept apart, whether the recording is new or merged into.
    one, one_float, flag = ({**event("kim"), "n": n} for n in (1, 1.0, True))
    for existing in (None, create(eventHistory=[one])):
        merged = merge_recordings(existing, valid(eventHistory=[one, one_float, flag, one]))
        assert [orjson.dumps(e) for e in merged["eventHistory"]] == [
            orjson.dumps(e) for e in (one, one_float, flag)
        ]


def test_merge_drops_repeated_events_of_a_long_history() -> None:
    # Past a few events, the history is compared by canonical JSON alone.
    events = [event("kim", at=f"2013-05-17T19:{m:02d}:00.000+0000") for m in range(12)]
    merged = merge_recordings(None, valid(eventHistory=[*events, *reversed(events)]))
    assert merged["eventHistory"] == events


def test_stored_gives_its_json_its_stored_form_and_its_document_from_either() -> None:
    doc = merge_recordings(None, valid())
    blob = orjson.dumps(doc)
    keys = index_keys(doc)
    from_json = Stored(keys, blob)
    from_stored_form = Stored(keys, packed=from_json.packed)
    assert from_stored_form.blob == blob
    assert from_stored_form.doc == doc
    assert unpack(from_json.packed) == blob


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (("10:00", "11:00"), ("09:00", "10:30"), ("09:00", "11:00")),
        (("10:00", "11:00"), ("10:30", "12:00"), ("10:00", "12:00")),
        (("10:00", "11:00"), ("10:15", "10:45"), ("10:00", "11:00")),
        (("10:00", "11:00"), ("08:00", "13:00"), ("08:00", "13:00")),
        (("10:00", None), ("09:00", "10:30"), ("09:00", "10:30")),
        (("10:00", "11:00"), (None, "12:00"), ("10:00", "12:00")),
        (("10:00", "11:00"), ("09:00", None), ("09:00", "11:00")),
        (("10:00", None), ("10:00", None), ("10:00", None)),
    ],
)
def test_merge_widens_start_and_stop(
    first: tuple[str | None, str | None],
    second: tuple[str | None, str | None],
    expected: tuple[str | None, str | None],
) -> None:
    def body(times: tuple[str | None, str | None]) -> dict[str, Any]:
        doc = local_recording()
        for key, hhmm in zip(("startTime", "stopTime"), times, strict=True):
            doc.pop(key)
            if hhmm:
                doc[key] = f"2013-05-17T{hhmm}:00Z"
        return validate_recording(doc, CC)

    merged = merge_recordings(merge_recordings(None, body(first)), body(second))
    start, stop = (f"2013-05-17T{t}:00.000+0000" if t else None for t in expected)
    assert merged["startTime"] == start
    assert merged.get("stopTime") == stop
    assert ("stopTime" in merged) is (stop is not None)


def test_merge_widens_by_instant_not_by_text() -> None:
    # Equal instants written in different zones; a later +14:00 local time is earlier in UTC.
    first = create(startTime="2013-05-17T10:00:00Z", stopTime="2013-05-17T11:00:00Z")
    second = valid(startTime="2013-05-17T23:00:00+14:00", stopTime="2013-05-17T11:00:00Z")
    assert merge_recordings(first, second)["startTime"] == "2013-05-17T09:00:00.000+0000"


def test_merge_derives_absent_times_from_media_files() -> None:
    raw = local_recording(
        mediaFiles=[
            media("a.mp3", startTime="2013-05-17T10:05:00Z", stopTime="2013-05-17T10:20:00Z"),
            media("b.mp3", startTime="2013-05-17T10:00:00Z", stopTime="2013-05-17T10:10:00Z"),
            media("c.mp3"),
        ]
    )
    del raw["startTime"], raw["stopTime"]
    doc = merge_recordings(None, validate_recording(raw, CC))
    assert doc["startTime"] == "2013-05-17T10:00:00.000+0000"
    assert doc["stopTime"] == "2013-05-17T10:20:00.000+0000"


def test_merge_derives_times_from_media_files_added_by_a_later_post() -> None:
    """SPEC §1/§5: absent times come from the media files, and times widen on merge."""

    def post(media_id: str, start: str, stop: str) -> dict[str, Any]:
        raw = local_recording(mediaFiles=[media(media_id, startTime=start, stopTime=stop)])
        del raw["startTime"], raw["stopTime"]
        return validate_recording(raw, CC)

    first = merge_recordings(None, post("a.mp3", "2013-05-17T10:00:00Z", "2013-05-17T10:05:00Z"))
    merged = merge_recordings(first, post("b.mp3", "2013-05-17T09:55:00Z", "2013-05-17T10:10:00Z"))
    assert merged["startTime"] == "2013-05-17T09:55:00.000+0000"
    assert merged["stopTime"] == "2013-05-17T10:10:00.000+0000"


def test_merge_derives_the_stop_of_an_in_progress_recording_from_new_media() -> None:
    first = create(stopTime=None)
    first.pop("stopTime", None)
    assert "stopTime" not in first
    finished = valid(
        mediaFiles=[
            media("a.mp3", startTime="2013-05-17T19:45:32Z", stopTime="2013-05-17T20:00:00Z")
        ]
    )
    del finished["stopTime"]
    assert merge_recordings(first, finished)["stopTime"] == "2013-05-17T20:00:00.000+0000"


def test_merge_without_any_start_time_is_missing_parameter() -> None:
    raw = local_recording(mediaFiles=[media("a.mp3", stopTime="2013-05-17T10:00:00Z")])
    del raw["startTime"], raw["stopTime"]
    with pytest.raises(MissingParameter) as caught:
        merge_recordings(None, validate_recording(raw, CC))
    assert caught.value.status_code == 1


@pytest.mark.parametrize("existing", [False, True])
def test_merge_with_stop_before_start_is_invalid(existing: bool) -> None:
    first = create(startTime="2013-05-17T10:00:00Z", stopTime=None) if existing else None
    if first is not None:
        first.pop("stopTime", None)
    incoming = valid(startTime="2013-05-17T10:00:00Z", stopTime="2013-05-17T09:59:59.999Z")
    with pytest.raises(InvalidParameter) as caught:
        merge_recordings(first, incoming)
    assert caught.value.status_code == 2


def test_merge_accepts_a_zero_length_recording() -> None:
    doc = create(startTime="2013-05-17T10:00:00Z", stopTime="2013-05-17T10:00:00Z")
    assert doc["startTime"] == doc["stopTime"]


def test_merging_the_same_post_twice_changes_nothing() -> None:
    body = valid(
        mediaFiles=[media("a.mp3", size="1"), media("b.mp3")],
        eventHistory=[event("kim"), event("ann", what="Left")],
        extra={"x": 1},
    )
    once = merge_recordings(None, body)
    twice = merge_recordings(once, body)
    assert twice == once
    assert list(twice) == list(once)


# --------------------------------------------------------------------------- find_media


FILES = {
    "id": "r",
    "mediaFiles": [
        {"mediaId": "a.mp3"},
        {"mediaId": "b"},
        {"mediaId": "b.wav"},
        {"mediaId": "c.part1.mp3"},
        {"mediaId": ".hidden"},
        "not a media file",
    ],
}


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        ("a.mp3", "a.mp3"),
        ("a", "a.mp3"),
        ("b", "b"),  # an exact name wins over another file's stem
        ("b.wav", "b.wav"),
        ("c.part1", "c.part1.mp3"),
        ("c.part1.mp3", "c.part1.mp3"),
        ("c", None),
        ("a.mp", None),
        ("A.mp3", None),
        (".hidden", ".hidden"),
        ("a.mp3.mp3", None),
        ("zzz", None),
    ],
)
def test_find_media_with_or_without_extension(asked: str, found: str | None) -> None:
    result = find_media(FILES, asked)
    assert (result or {}).get("mediaId") == found


def test_find_media_without_media_files() -> None:
    assert find_media({"id": "r"}, "a") is None


# --------------------------------------------------------------------------- index_keys


def test_index_keys_of_a_stored_recording() -> None:
    doc = create(
        id="r-9",
        region="euw1",
        callerPhoneNumber="+1 (650) 466-8888",
        dialedPhoneNumber="sip:Support@pbx.example.com",
        eventHistory=[
            {"event": "Joined", "contact": {"type": "External", "phoneNumber": "8522001"}},
            {
                "event": "Joined",
                "contact": {
                    "userName": " Kim.Lee@Example.COM ",
                    "firstName": "Kim",
                    "lastName": "Straße",
                },
            },
            {"event": "Left", "contact": {"userName": "kim.lee@example.com", "firstName": "KIM"}},
        ],
    )
    keys = index_keys(doc)
    assert keys.id == "r-9"
    assert keys.region == "euw1"
    assert keys.start_ms == 1368819932000
    assert keys.stop_ms == 1368828936000
    assert keys.caller == "16504668888"
    assert keys.dialed == "sipSupportpbxexamplecom"
    assert keys.names == ["kim.lee@example.com", "kim", fold_name("Straße")]
    assert fold_name("Straße") == "strasse"


def test_index_keys_of_an_in_progress_recording_without_numbers() -> None:
    doc = create(stopTime=None, callerPhoneNumber=None, dialedPhoneNumber=None, eventHistory=[])
    doc.pop("stopTime", None)
    keys = index_keys(doc)
    assert keys.stop_ms is None
    assert (keys.caller, keys.dialed, keys.names) == ("", "", [])


# --------------------------------------------------------------------------- as_posted


def test_as_posted_round_trips_through_prepare_and_merge(storages: Storages) -> None:
    descriptor = {"storage": "local", "path": "cc1/rec-1/a.mp3", "data": {"k": "v"}}
    raw = local_recording(
        startTime="2013-05-17T21:45:32+02:00",
        mediaFiles=[media("a.mp3", mediaDescriptor=descriptor, size="10"), media("b.mp3")],
        eventHistory=[event("kim")],
        extra=[1, "two"],
    )
    stored = merge_recordings(None, prepare(storages, raw, CC))
    assert stored["mediaFiles"][0]["mediaDescriptor"] == {
        "storage": "local",
        "path": "cc1/rec-1/a.mp3",
    }
    assert stored["mediaFiles"][0]["originalMediaDescriptor"] == descriptor
    posted = as_posted(stored)
    assert posted["mediaFiles"][0]["mediaDescriptor"] == descriptor
    assert "originalMediaDescriptor" not in posted["mediaFiles"][0]
    again = merge_recordings(None, prepare(storages, posted, CC))
    assert again == stored
    assert list(again) == list(stored)


def test_as_posted_of_an_uploaded_file_keeps_its_local_location(storages: Storages) -> None:
    uploaded = media("a.mp3", size="3", mediaDescriptor={"storage": "local", "path": "cc1/r/a.mp3"})
    stored = create(mediaFiles=[uploaded])
    posted = as_posted(stored)
    assert posted["mediaFiles"] == [uploaded]
    assert merge_recordings(None, prepare(storages, posted, CC))["mediaFiles"] == [
        {**uploaded, "originalMediaDescriptor": uploaded["mediaDescriptor"]}
    ]


def test_as_posted_gives_back_a_legacy_media_uri() -> None:
    uri = "http://webdav.example.internal/recordings/voice/1.mp3"
    stored = create(
        mediaFiles=[
            media(
                "a.mp3",
                mediaDescriptor={"storage": "webDAV", "path": "voice/1.mp3"},
                originalMediaDescriptor={"mediaUri": uri},
            )
        ]
    )
    [posted] = as_posted(stored)["mediaFiles"]
    assert posted == {"mediaId": "a.mp3", "type": "audio/mp3", "mediaUri": uri}


def test_as_posted_does_not_modify_the_stored_document(storages: Storages) -> None:
    raw = local_recording(
        mediaFiles=[media("a.mp3", mediaDescriptor={"storage": "local", "path": "cc1/x/a"})]
    )
    stored = merge_recordings(None, prepare(storages, raw, CC))
    before = copy.deepcopy(stored)
    as_posted(stored)
    assert stored == before


# --------------------------------------------------------------------------- Storages.resolve


def test_resolve_accepts_a_local_path(storages: Storages) -> None:
    descriptor = {"storage": "local", "path": "cc1/rec-1/a.mp3"}
    resolved = storages.resolve(media("a.mp3", mediaDescriptor=descriptor), CC)
    assert resolved["mediaDescriptor"] == descriptor
    assert resolved["originalMediaDescriptor"] == descriptor
    assert resolved["mediaId"] == "a.mp3"


def test_resolve_leaves_a_file_without_location_alone(storages: Storages) -> None:
    assert storages.resolve(media("a.mp3", size="1"), CC) == media("a.mp3", size="1")


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "cc1/../../etc/passwd",
        "cc1/rec/..",
        "/etc/passwd",
        "cc1//a.mp3",
        "cc1/./a.mp3",
        ".",
        "",
        "cc1\\..\\a.mp3",
        "cc1/rec/a.mp3/",
        ".incoming/0123",
        "cc1/a\x00.mp3",
        "cc1/a\n.mp3",
    ],
)
def test_resolve_refuses_paths_leaving_the_local_store(storages: Storages, path: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        storages.resolve(media("a.mp3", mediaDescriptor={"storage": "local", "path": path}), CC)
    assert caught.value.status_code == 2


@pytest.mark.parametrize(
    "location",
    [
        {"mediaDescriptor": {"storage": "webDAV", "path": "voice/1.mp3"}},
        {
            "mediaDescriptor": {
                "storage": "awsS3",
                "path": "18bae11b/01I6E87G.mp3",
                "data": {"bucket": "gvp-callrecording"},
            }
        },
        {"mediaDescriptor": {"storage": "LOCAL", "path": "cc1/a.mp3"}},
        {"mediaDescriptor": {"storage": "local"}},
        {"mediaDescriptor": {"storage": "local", "path": ["cc1", "a.mp3"]}},
        {"mediaUri": "http://webdav.example.internal/recordings/voice/1.mp3"},
        {"mediaUri": "file:///etc/passwd"},
        {"mediaUri": "http://169.254.169.254/latest/meta-data/"},
    ],
)
def test_resolve_refuses_storages_that_are_not_configured(
    storages: Storages, location: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        storages.resolve(media("a.mp3", **location), CC)
    assert caught.value.status_code == 2
    # The refusal must not echo the location back (SPEC §6: no storage URL in an error).
    assert "169.254" not in caught.value.message
    assert "webdav.example" not in caught.value.message


def test_resolve_refuses_local_paths_when_no_local_store_is_configured() -> None:
    with pytest.raises(InvalidParameter):
        Storages({}).resolve(
            media("a.mp3", mediaDescriptor={"storage": "local", "path": "cc1/a"}), CC
        )


def test_prepare_rejects_a_recording_with_an_unconfigured_location(storages: Storages) -> None:
    raw = local_recording(
        mediaFiles=[media("a.mp3", mediaDescriptor={"storage": "awsS3", "path": "x"})]
    )
    with pytest.raises(InvalidParameter):
        prepare(storages, raw, CC)


def test_prepare_validates_before_resolving(storages: Storages) -> None:
    raw = local_recording(mediaFiles=[media("a.mp3", mediaUri="http://x/a.mp3")])
    del raw["region"]
    with pytest.raises(MissingParameter):
        prepare(storages, raw, CC)


@pytest.mark.parametrize(
    "number",
    [
        "12.5",
        "1e300",
        "-0.0",
        "0.1",
        "12345678.12345679",
        "1.50",
        "1e2",
        "5e-324",
        "9223372036854775807",
        "-9223372036854775808",
    ],
)
def test_numbers_a_double_or_64_bits_hold_are_kept_as_they_are(number: str) -> None:
    body = f'{{"a": [{{"n": {number}}}], "s": "12345678901234567890"}}'.encode()
    assert parse_json(body) == {"a": [{"n": orjson.loads(number)}], "s": "12345678901234567890"}


@pytest.mark.parametrize(
    "number",
    [
        "12345678.123456789",
        "9007199254740.993",  # 16 digits, 17 characters: the double is ...992
        "900719925474099.3",
        "1e-400",  # below the smallest double: 0.0
        "-2.5e-330",
        "9223372036854775808",
        "18446744073709551615",
        "1" * 30,
        "1e400",
    ],
)
def test_numbers_that_would_lose_digits_are_refused_wherever_they_are(number: str) -> None:
    for body in (f'{{"n": {number}}}', f'{{"a": [1, {{"b": [{number}]}}]}}', f"[{number}]"):
        with pytest.raises(InvalidParameter, match="cannot be kept exactly"):
            parse_json(body.encode())


def test_bodies_nested_deeper_than_the_limit_are_refused() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    deeper = (
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'{"n": 1.5, "x": ' * 70 + b"1" + b"}" * 70,
    )
    for body in deeper:  # the second has a float: read again exactly, and still refused
        with pytest.raises(InvalidParameter, match=f"more than {MAX_DEPTH} levels deep"):
            parse_json(body)
