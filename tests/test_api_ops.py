"""HTTP tests of the internal (ops) API, SPEC §5: create/merge, bulk, upload, delete, CSRF."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from callrec.ingest import as_posted
from callrec.services import Services
from callrec.settings import Settings
from conftest import PASSWORD, basic, load_example, local_recording

OPS = "/api/v2/ops/contact-centers/{ccid}/recordings"
INTERNAL = "/internal-api/contact-centers/{ccid}/recordings"
BASES = [OPS, INTERNAL]
RECORDER = basic("recorder")
S3_EXAMPLE = "ops-create-recording.json"
WEBDAV_EXAMPLE = "ops-create-recording-webdav.json"
S3_CCID = "18bae11b-3028-4844-aba1-ac47bad457f0"


@pytest.fixture(scope="module")
def password_hash() -> str:
    """Overrides conftest's: cheap argon2 parameters keep every test's first login fast."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


def ops_url(ccid: str = "cc1", *rest: str, base: str = OPS) -> str:
    return "/".join([base.format(ccid=ccid), *rest])


def post(client: TestClient, body: Any, ccid: str = "cc1", base: str = OPS) -> Any:
    return client.post(ops_url(ccid, base=base), json=body, headers=RECORDER)


def post_ok(client: TestClient, body: Any, ccid: str = "cc1", base: str = OPS) -> None:
    response = post(client, body, ccid, base)
    assert response.status_code == 200, response.text
    assert response.json() == {"statusCode": 0}


def post_raw(client: TestClient, content: bytes, ccid: str = "cc1", base: str = OPS) -> Any:
    headers = {**RECORDER, "Content-Type": "application/json"}
    return client.post(ops_url(ccid, base=base), content=content, headers=headers)


def stored(client: TestClient, rec_id: str, ccid: str = "cc1") -> dict[str, Any]:
    response = client.get(ops_url(ccid, rec_id), headers=RECORDER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statusCode"] == 0
    recording: dict[str, Any] = body["recording"]
    return recording


def absent(client: TestClient, rec_id: str, ccid: str = "cc1") -> bool:
    response = client.get(ops_url(ccid, rec_id), headers=RECORDER)
    if response.status_code == 404:
        assert response.json()["statusCode"] == 6
        return True
    assert response.status_code == 200, response.text
    return False


def upload(
    client: TestClient,
    rec_id: str,
    media_id: str,
    content: Any,
    ccid: str = "cc1",
    headers: dict[str, str] | None = None,
) -> Any:
    url = ops_url(ccid, rec_id, "media", media_id)
    return client.put(url, content=content, headers={**RECORDER, **(headers or {})})


def assert_error(response: Any, http_status: int, status_code: int) -> None:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "statusMessage"}
    assert body["statusCode"] == status_code
    assert isinstance(body["statusMessage"], str)


def event(occurred: str, name: str, **contact: str) -> dict[str, Any]:
    return {"occurredAt": occurred, "event": name, "contact": {"type": "Agent", **contact}}


def local_media(media_id: str, path: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "mediaId": media_id,
        "type": "audio/mp3",
        "mediaDescriptor": {"storage": "local", "path": path or f"cc1/{media_id}"},
        **fields,
    }


def files_under(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- create


@pytest.mark.parametrize("base", BASES)
def test_create_one_object(client: TestClient, base: str) -> None:
    doc = local_recording("rec-1", callType="Inbound", custom={"kept": ["as", 1, None]})
    post_ok(client, doc, base=base)
    got = stored(client, "rec-1")
    for key, value in doc.items():
        assert got[key] == value, key
    external = client.get("/api/v2/recordings/rec-1", headers=basic("alice")).json()
    assert external["recording"]["custom"] == {"kept": ["as", 1, None]}


@pytest.mark.parametrize("base", BASES)
def test_create_array(client: TestClient, base: str) -> None:
    docs = [local_recording(f"rec-{i}") for i in range(3)]
    post_ok(client, docs, base=base)
    for i in range(3):
        assert stored(client, f"rec-{i}")["id"] == f"rec-{i}"


@pytest.mark.parametrize("base", BASES)
def test_empty_array_is_a_successful_no_op(client: TestClient, base: str) -> None:
    post_ok(client, [], base=base)


def test_same_id_in_two_contact_centers_are_two_recordings(client: TestClient) -> None:
    post_ok(client, local_recording("rec-1", callType="one"), "cc1")
    post_ok(client, local_recording("rec-1", callType="two"), "cc2")
    assert stored(client, "rec-1", "cc1")["callType"] == "one"
    assert stored(client, "rec-1", "cc2")["callType"] == "two"


def test_times_are_normalised_on_ingest(client: TestClient) -> None:
    doc = local_recording(
        "rec-1",
        startTime="2013-05-17T21:45:32+02:00",
        stopTime="2013-05-17T22:15:36.123456Z",
        eventHistory=[event("2013-05-17T15:45:40.5-0400", "Joined", userName="kim")],
        mediaFiles=[
            local_media(
                "a.mp3", startTime="2013-05-17T19:45:33Z", stopTime="2013-05-17T22:15:36+0000"
            )
        ],
    )
    post_ok(client, doc)
    got = stored(client, "rec-1")
    assert got["startTime"] == "2013-05-17T19:45:32.000+0000"
    assert got["stopTime"] == "2013-05-17T22:15:36.123+0000"
    assert got["eventHistory"][0]["occurredAt"] == "2013-05-17T19:45:40.500+0000"
    assert got["mediaFiles"][0]["startTime"] == "2013-05-17T19:45:33.000+0000"
    assert got["mediaFiles"][0]["stopTime"] == "2013-05-17T22:15:36.000+0000"


# --------------------------------------------------------------------------- merge


def test_merge_replaces_given_fields_and_keeps_the_rest(client: TestClient) -> None:
    post_ok(client, local_recording("rec-1", callType="Inbound", note="first"))
    post_ok(
        client,
        {
            "id": "rec-1",
            "region": "usw1",
            "callType": "Outbound",
            "callerPhoneNumber": "sip:Bob@x",
            "extra": [1],
        },
    )
    got = stored(client, "rec-1")
    assert got["callType"] == "Outbound"
    assert got["callerPhoneNumber"] == "sip:Bob@x"
    assert got["extra"] == [1]
    assert got["note"] == "first"
    assert got["dialedPhoneNumber"] == "+14155551234"
    assert got["startTime"] == "2013-05-17T19:45:32.000+0000"
    assert len(got["eventHistory"]) == 1


def test_merge_upserts_media_by_media_id(client: TestClient) -> None:
    first = [local_media("a.mp3", size="10", tenant="T"), local_media("b.mp3")]
    post_ok(client, local_recording("rec-1", mediaFiles=first))
    second = [{"mediaId": "a.mp3", "size": "20"}, local_media("c.wav", type="audio/wav")]
    post_ok(client, local_recording("rec-1", mediaFiles=second))
    media = {m["mediaId"]: m for m in stored(client, "rec-1")["mediaFiles"]}
    assert set(media) == {"a.mp3", "b.mp3", "c.wav"}
    assert media["a.mp3"]["size"] == "20"
    assert media["a.mp3"]["tenant"] == "T"
    assert media["a.mp3"]["type"] == "audio/mp3"
    assert media["a.mp3"]["mediaDescriptor"] == {"storage": "local", "path": "cc1/a.mp3"}
    assert media["c.wav"]["type"] == "audio/wav"


def test_merge_appends_events_unless_identical(client: TestClient) -> None:
    joined = event("2013-05-17T19:45:40.000+0000", "Joined", userName="kim", firstName="Kim")
    left = event("2013-05-17T20:00:00.000+0000", "Left", userName="kim", firstName="Kim")
    post_ok(client, local_recording("rec-1", eventHistory=[joined]))
    # The same event again, with its keys in another order and its time in another format.
    same = {
        "contact": {"firstName": "Kim", "userName": "kim", "type": "Agent"},
        "event": "Joined",
        "occurredAt": "2013-05-17T19:45:40Z",
    }
    post_ok(client, local_recording("rec-1", eventHistory=[same, left]))
    post_ok(client, local_recording("rec-1", eventHistory=[left]))
    other = event("2013-05-17T19:45:40.000+0000", "Joined", userName="ann")
    post_ok(client, local_recording("rec-1", eventHistory=[other]))
    events = stored(client, "rec-1")["eventHistory"]
    assert [(e["event"], e["contact"]["userName"]) for e in events] == [
        ("Joined", "kim"),
        ("Left", "kim"),
        ("Joined", "ann"),
    ]


def test_repeated_identical_post_changes_nothing(client: TestClient) -> None:
    doc = local_recording("rec-1", mediaFiles=[local_media("a.mp3")])
    post_ok(client, doc)
    before = stored(client, "rec-1")
    post_ok(client, doc)
    post_ok(client, [doc, doc])
    assert stored(client, "rec-1") == before


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (("09:00:00", "10:10:00"), ("09:00:00", "10:30:00")),
        (("10:10:00", "11:00:00"), ("10:00:00", "11:00:00")),
        (("10:10:00", "10:20:00"), ("10:00:00", "10:30:00")),
        (("08:00:00", "12:00:00"), ("08:00:00", "12:00:00")),
        (("10:00:00", None), ("10:00:00", "10:30:00")),
        ((None, "10:45:00"), ("10:00:00", "10:45:00")),
    ],
)
def test_merge_widens_start_and_stop(
    client: TestClient, second: tuple[str | None, str | None], expected: tuple[str, str]
) -> None:
    def at(clock: str) -> str:
        return f"2013-05-17T{clock}.000+0000"

    post_ok(client, local_recording("rec-1", startTime=at("10:00:00"), stopTime=at("10:30:00")))
    update: dict[str, Any] = {"id": "rec-1", "region": "usw1"}
    if second[0]:
        update["startTime"] = at(second[0])
    if second[1]:
        update["stopTime"] = at(second[1])
    post_ok(client, update)
    got = stored(client, "rec-1")
    assert (got["startTime"], got["stopTime"]) == (at(expected[0]), at(expected[1]))


def test_merge_completes_an_in_progress_recording(client: TestClient) -> None:
    doc = local_recording("rec-1")
    del doc["stopTime"]
    post_ok(client, doc)
    assert "stopTime" not in stored(client, "rec-1")
    live = client.get(
        "/api/v2/recordings", params={"endTime": "2099-01-01"}, headers=basic("alice")
    )
    assert live.json()["recordings"] == []
    post_ok(client, {"id": "rec-1", "region": "usw1", "stopTime": "2013-05-17T20:00:00Z"})
    assert stored(client, "rec-1")["stopTime"] == "2013-05-17T20:00:00.000+0000"
    done = client.get(
        "/api/v2/recordings", params={"endTime": "2099-01-01"}, headers=basic("alice")
    )
    assert [r["id"] for r in done.json()["recordings"]] == ["rec-1"]


def test_times_derived_from_media_when_absent(client: TestClient) -> None:
    doc = local_recording(
        "rec-1",
        mediaFiles=[
            local_media("a.mp3", startTime="2013-05-17T19:50:00Z", stopTime="2013-05-17T20:00:00Z"),
            local_media(
                "b.mp3",
                startTime="2013-05-17T21:45:00+02:00",  # 19:45Z, the earliest
                stopTime="2013-05-17T20:30:00.250Z",  # the latest
            ),
            local_media("c.mp3"),
        ],
    )
    del doc["startTime"], doc["stopTime"]
    post_ok(client, doc)
    got = stored(client, "rec-1")
    assert got["startTime"] == "2013-05-17T19:45:00.000+0000"
    assert got["stopTime"] == "2013-05-17T20:30:00.250+0000"


def test_times_derived_from_media_of_a_later_post_widen(client: TestClient) -> None:
    first = local_recording(
        "rec-1",
        mediaFiles=[
            local_media("a.mp3", startTime="2013-05-17T19:50:00Z", stopTime="2013-05-17T20:00:00Z")
        ],
    )
    del first["startTime"], first["stopTime"]
    post_ok(client, first)
    # A second leg of the call, posted without top-level times: its media start earlier and
    # stop later, so the recording's derived times widen to cover it.
    second = {
        "id": "rec-1",
        "region": "usw1",
        "mediaFiles": [
            local_media("b.mp3", startTime="2013-05-17T19:40:00Z", stopTime="2013-05-17T20:10:00Z")
        ],
    }
    post_ok(client, second)
    got = stored(client, "rec-1")
    assert got["startTime"] == "2013-05-17T19:40:00.000+0000"
    assert got["stopTime"] == "2013-05-17T20:10:00.000+0000"


def test_no_start_time_anywhere_is_status_1(client: TestClient) -> None:
    doc = local_recording("rec-1", mediaFiles=[local_media("a.mp3")])
    del doc["startTime"], doc["stopTime"]
    assert_error(post(client, doc), 400, 1)
    assert absent(client, "rec-1")


def test_stop_before_start_is_status_2(client: TestClient) -> None:
    doc = local_recording("rec-1", stopTime="2013-05-17T19:00:00.000+0000")
    assert_error(post(client, doc), 400, 2)
    assert absent(client, "rec-1")


# --------------------------------------------------------------------------- bulk


@pytest.mark.parametrize("base", BASES)
def test_bulk_partial_failure(client: TestClient, base: str) -> None:
    no_id = local_recording()
    del no_id["id"]
    bad_time = local_recording("bad-time", startTime="yesterday")
    no_region = local_recording("no-region")
    del no_region["region"]
    items = [local_recording("good-1"), no_id, bad_time, 42, no_region, local_recording("good-2")]
    response = post(client, items, base=base)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["statusCode"] == 7
    assert body["statusMessage"] == "2 of 6 recordings saved"
    results = body["results"]
    assert [r.get("id") for r in results] == [
        "good-1",
        None,
        "bad-time",
        None,
        "no-region",
        "good-2",
    ]
    assert [r["statusCode"] for r in results] == [0, 1, 2, 2, 1, 0]
    for result in results:
        assert set(result) <= {"id", "statusCode", "statusMessage"}
        if result["statusCode"]:
            assert isinstance(result["statusMessage"], str)
    assert not absent(client, "good-1")
    assert not absent(client, "good-2")
    assert absent(client, "bad-time")
    assert absent(client, "no-region")


def test_bulk_where_every_item_fails_still_lists_them(client: TestClient) -> None:
    response = post(client, [{"id": "x"}, {"region": "usw1"}])
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 7
    assert body["statusMessage"] == "0 of 2 recordings saved"
    assert [r["statusCode"] for r in body["results"]] == [1, 1]
    assert absent(client, "x")


def test_bulk_item_failing_on_merge_is_reported(client: TestClient) -> None:
    live = local_recording("rec-1")
    del live["stopTime"]
    post_ok(client, live)
    # Valid alone, but merged with the stored recording its stop precedes its start.
    early_stop = {"id": "rec-1", "region": "usw1", "stopTime": "2013-05-17T19:00:00Z"}
    late_start = {"id": "rec-1", "region": "usw1", "startTime": "2013-05-18T00:00:00Z"}
    response = post(client, [local_recording("rec-2"), early_stop])
    body = response.json()
    assert body["statusCode"] == 7
    assert [r["statusCode"] for r in body["results"]] == [0, 2]
    assert not absent(client, "rec-2")
    assert "stopTime" not in stored(client, "rec-1")
    post_ok(client, late_start)  # widening: the start stays the earlier one
    assert stored(client, "rec-1")["startTime"] == "2013-05-17T19:45:32.000+0000"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("missing", ["id", "region"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_id_or_region_is_status_1(client: TestClient, missing: str, how: str) -> None:
    doc = local_recording("rec-1")
    if how == "absent":
        del doc[missing]
    else:
        doc[missing] = None
    assert_error(post(client, doc), 400, 1)
    assert absent(client, "rec-1")


def _mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    def setter(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc.__setitem__(key, value)

    def media(**fields: Any) -> Callable[[dict[str, Any]], None]:
        return setter("mediaFiles", [{"mediaId": "a.mp3", **fields}])

    return [
        ("id-space", setter("id", "has space")),
        ("id-slash", setter("id", "a/b")),
        ("id-dotdot", setter("id", "..")),
        ("id-empty", setter("id", "")),
        ("id-long", setter("id", "x" * 129)),
        ("id-number", setter("id", 12345)),
        ("id-unicode", setter("id", "réc")),
        ("region-number", setter("region", 1)),
        ("region-object", setter("region", {"name": "usw1"})),
        ("start-word", setter("startTime", "yesterday")),
        ("start-number", setter("startTime", 1368819932000)),
        ("start-month13", setter("startTime", "2013-13-17T19:45:32Z")),
        ("stop-garbage", setter("stopTime", "2013-05-17 soon")),
        ("caller-number", setter("callerPhoneNumber", 16504668888)),
        ("dialed-list", setter("dialedPhoneNumber", ["1"])),
        ("calltype-number", setter("callType", 3)),
        ("media-not-list", setter("mediaFiles", {"mediaId": "a"})),
        ("media-item-string", setter("mediaFiles", ["a.mp3"])),
        ("media-id-slash", media(mediaId="a/b.mp3")),
        ("media-id-dotdot", media(mediaId="..")),
        ("media-id-number", media(mediaId=7)),
        ("media-bad-start", media(startTime="noon")),
        ("media-size-number", media(size=153504)),
        ("media-duplicate", setter("mediaFiles", [{"mediaId": "a"}, {"mediaId": "a"}])),
        ("descriptor-string", media(mediaDescriptor="local:/x")),
        ("events-not-list", setter("eventHistory", "Joined")),
        ("event-string", setter("eventHistory", ["Joined"])),
        ("event-bad-time", setter("eventHistory", [{"occurredAt": "later", "event": "Joined"}])),
        ("contact-string", setter("eventHistory", [{"event": "Joined", "contact": "kim"}])),
        (
            "contact-name-number",
            setter("eventHistory", [{"event": "Joined", "contact": {"userName": 5}}]),
        ),
        ("ccid-mismatch", setter("ccid", "cc2")),
    ]


@pytest.mark.parametrize(
    "mutate", [m for _, m in _mutations()], ids=[name for name, _ in _mutations()]
)
def test_malformed_values_are_status_2(
    client: TestClient, mutate: Callable[[dict[str, Any]], None]
) -> None:
    doc = local_recording("rec-1")
    mutate(doc)
    assert_error(post(client, doc), 400, 2)
    assert absent(client, "rec-1")


@pytest.mark.parametrize(
    "media",
    [
        {"type": "audio/mp3"},
        {"mediaId": None},
        {"mediaId": "a.mp3", "mediaDescriptor": {"path": "a"}},
    ],
    ids=["no-media-id", "null-media-id", "descriptor-without-storage"],
)
def test_media_missing_a_required_field_is_refused(client: TestClient, media: Any) -> None:
    # SPEC names statusCode 1 only for id/region; a nested missing field may be 1 or 2.
    response = post(client, local_recording("rec-1", mediaFiles=[media]))
    assert response.status_code == 400
    assert response.json()["statusCode"] in (1, 2)
    assert absent(client, "rec-1")


@pytest.mark.parametrize("body", [42, "rec-1", None, True, 1.5])
def test_body_that_is_not_an_object_or_array_is_status_2(client: TestClient, body: Any) -> None:
    assert_error(post(client, body), 400, 2)


@pytest.mark.parametrize("item", [42, "rec-1", None, [local_recording("rec-1")]])
def test_bulk_item_that_is_not_an_object_is_reported(client: TestClient, item: Any) -> None:
    response = post(client, [local_recording("rec-2"), item])
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 7
    assert [r["statusCode"] for r in body["results"]] == [0, 2]
    assert absent(client, "rec-1")
    assert not absent(client, "rec-2")


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"id": "rec-1", "region": "usw1",',
        b"[" + json.dumps(local_recording("rec-1")).encode() + b", {not json}]",
        b"[" + json.dumps(local_recording("rec-1")).encode() + b",",
        json.dumps(local_recording("rec-1")).encode() + b" trailing",
        b"\xff\xfe{}",
        b"{'id': 'rec-1'}",
        b"NaN",
    ],
    ids=[
        "empty",
        "brace",
        "truncated",
        "bulk-bad-tail",
        "bulk-truncated",
        "trailing",
        "bad-utf8",
        "single-quotes",
        "nan",
    ],
)
def test_invalid_json_writes_nothing(client: TestClient, base: str, content: bytes) -> None:
    assert_error(post_raw(client, content, base=base), 400, 2)
    assert absent(client, "rec-1")


def test_nul_anywhere_in_the_body_is_refused(client: TestClient) -> None:
    doc = local_recording("rec-1", callType="In\u0000bound")
    assert_error(post(client, doc), 400, 2)
    bulk = [local_recording("rec-2"), local_recording("rec-3", **{"k\u0000ey": "v"})]
    assert_error(post(client, bulk), 400, 2)
    assert absent(client, "rec-1")
    assert absent(client, "rec-2")


def test_body_larger_than_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    app = make_client(max_body_bytes=1024)
    doc = local_recording("rec-1", padding="x" * 2000)
    assert_error(post(app, doc), 413, 2)
    assert absent(app, "rec-1")
    chunked = app.post(ops_url(), content=iter([json.dumps(doc).encode()]), headers=RECORDER)
    assert_error(chunked, 413, 2)
    post_ok(app, local_recording("rec-2"))


# --------------------------------------------------------------------------- the examples


@pytest.mark.parametrize(
    ("name", "ccid", "leak"),
    [
        (S3_EXAMPLE, S3_CCID, "gvp-callrecording"),
        (WEBDAV_EXAMPLE, "cc1", "webdav.example.internal"),
    ],
)
@pytest.mark.parametrize("base", BASES)
def test_examples_refused_without_their_storage(
    client: TestClient, name: str, ccid: str, leak: str, base: str
) -> None:
    example = load_example(name)
    response = post(client, example, ccid, base)
    assert_error(response, 400, 2)
    assert leak not in response.text
    assert absent(client, example["id"], ccid)


def test_s3_example_rewritten_to_local_storage(client: TestClient) -> None:
    example = load_example(S3_EXAMPLE)
    original = copy.deepcopy(example)
    descriptor = {"storage": "local", "path": f"{S3_CCID}/call.mp3"}
    example["mediaFiles"][0]["mediaDescriptor"] = descriptor
    post_ok(client, example, S3_CCID, INTERNAL)
    got = stored(client, example["id"], S3_CCID)
    assert got["startTime"] == "2014-12-16T18:42:41.000+0000"
    assert got["stopTime"] == "2014-12-16T18:43:19.000+0000"
    for key in ("id", "ccid", "region", "callerPhoneNumber", "dialedPhoneNumber", "eventHistory"):
        assert got[key] == original[key], key
    [media] = got["mediaFiles"]
    sent = original["mediaFiles"][0]
    for key in ("mediaId", "type", "duration", "size", "tenant", "ivrprofile", "callUUID"):
        assert media[key] == sent[key], key
    for key in ("parameters", "masks", "partitions", "accessgroups"):
        assert media[key] == sent[key], key
    assert media["startTime"] == "2014-12-16T18:42:41.000+0000"
    assert media["originalMediaDescriptor"] == descriptor
    assert media["mediaDescriptor"] == descriptor
    assert media["mediaUri"].endswith(
        f"/api/v2/ops/contact-centers/{S3_CCID}/recordings/{example['id']}/play/{sent['mediaId']}"
    )
    # An OPS account reads it on the external API too, without storage details.
    external = client.get(
        f"/api/v2/recordings/{example['id']}",
        params={"contactCenterId": S3_CCID},
        headers=RECORDER,
    )
    assert external.status_code == 200, external.text
    [shown] = external.json()["recording"]["mediaFiles"]
    assert "mediaDescriptor" not in shown
    assert "originalMediaDescriptor" not in shown
    assert S3_CCID + "/call.mp3" not in external.text


def test_webdav_example_rewritten_to_local_storage(client: TestClient) -> None:
    example = load_example(WEBDAV_EXAMPLE)
    original = copy.deepcopy(example)
    media = example["mediaFiles"][0]
    del media["mediaUri"]
    media["mediaDescriptor"] = {"storage": "local", "path": "cc1/voice/4f82ee48.mp3"}
    post_ok(client, example, "cc1", INTERNAL)
    got = stored(client, example["id"])
    for key in (
        "callerPhoneNumber",
        "dialedPhoneNumber",
        "startTime",
        "stopTime",
        "callType",
        "eventHistory",
        "region",
    ):
        assert got[key] == original[key], key
    assert got["callerPhoneNumber"] == "8522001"
    assert got["dialedPhoneNumber"] == "+14160000001"
    [shown] = got["mediaFiles"]
    assert shown["duration"] == "12523"
    assert shown["size"] == "199296"
    assert shown["parameters"] == original["mediaFiles"][0]["parameters"]
    found = client.get(
        "/api/v2/recordings", params={"callerPhoneNumber": "8522001"}, headers=basic("alice")
    )
    assert [r["id"] for r in found.json()["recordings"]] == [example["id"]]
    by_agent = client.get(
        "/api/v2/recordings", params={"userName": "kim AND lee"}, headers=basic("alice")
    )
    assert [r["id"] for r in by_agent.json()["recordings"]] == [example["id"]]


# --------------------------------------------------------------------------- descriptors


@pytest.mark.parametrize(
    "descriptor",
    [
        {"storage": "local", "path": "../x"},
        {"storage": "local", "path": "/etc/passwd"},
        {"storage": "local", "path": "a/../../b"},
        {"storage": "local", "path": "a/.."},
        {"storage": "local", "path": "./x"},
        {"storage": "local", "path": "a\\b"},
        {"storage": "local", "path": "..\\..\\windows\\win.ini"},
        {"storage": "local", "path": "a//b"},
        {"storage": "local", "path": "a/"},
        {"storage": "local", "path": ""},
        {"storage": "local", "path": "a\nb"},
        {"storage": "local", "path": ".incoming/x"},
        {"storage": "local", "path": 42},
        {"storage": "local"},
        {"storage": "file", "path": "x.mp3"},
        {"storage": "awsS3", "path": "x.mp3", "data": {"bucket": "b"}},
        {"storage": "webDAV", "path": "http://evil.example/x.mp3"},
    ],
    ids=repr,
)
def test_media_descriptors_outside_configured_storage_are_refused(
    client: TestClient, descriptor: dict[str, Any]
) -> None:
    doc = local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "mediaDescriptor": descriptor}])
    response = post(client, doc)
    assert_error(response, 400, 2)
    assert "/etc/passwd" not in response.text
    assert absent(client, "rec-1")


@pytest.mark.parametrize("path", ["cc2/rec-9/a.mp3", "cc2", "cc10/a.mp3", "CC1/a.mp3"])
def test_local_media_of_another_contact_center_is_refused(client: TestClient, path: str) -> None:
    doc = local_recording("rec-1", mediaFiles=[local_media("a.mp3", path=path)])
    assert_error(post(client, doc), 400, 2)
    assert absent(client, "rec-1")


@pytest.mark.parametrize("path", ["a\u0000b", "../\u0000"])
def test_media_descriptor_with_nul_is_refused(client: TestClient, path: str) -> None:
    doc = local_recording("rec-1", mediaFiles=[local_media("a.mp3", path=path)])
    assert_error(post(client, doc), 400, 2)
    assert absent(client, "rec-1")


@pytest.mark.parametrize(
    "uri",
    [
        "http://webdav.example.internal/x.mp3",
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
        "s3://bucket/key.mp3",
    ],
)
def test_legacy_media_uri_without_configured_storage_is_refused(
    client: TestClient, uri: str
) -> None:
    doc = local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "mediaUri": uri}])
    response = post(client, doc)
    assert_error(response, 400, 2)
    assert uri not in response.text
    assert absent(client, "rec-1")


# --------------------------------------------------------------------------- ops get / search


def test_ops_get_shows_original_media_descriptor(client: TestClient) -> None:
    sent = {"storage": "local", "path": "cc1/x/a.mp3", "data": {"note": "as sent"}}
    post_ok(
        client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "mediaDescriptor": sent}])
    )
    [media] = stored(client, "rec-1")["mediaFiles"]
    assert media["originalMediaDescriptor"] == sent
    assert media["mediaDescriptor"] == {"storage": "local", "path": "cc1/x/a.mp3"}
    assert media["mediaUri"] == (
        "http://testserver/api/v2/ops/contact-centers/cc1/recordings/rec-1/play/a.mp3"
    )


def test_ops_get_unknown_is_404(client: TestClient) -> None:
    post_ok(client, local_recording("rec-1"), "cc2")
    assert_error(client.get(ops_url("cc1", "rec-1"), headers=RECORDER), 404, 6)
    assert_error(client.get(ops_url("cc1", "nope"), headers=RECORDER), 404, 6)


def test_ops_search(client: TestClient) -> None:
    post_ok(client, [local_recording("a"), local_recording("b", callerPhoneNumber="999")])
    post_ok(client, [local_recording("c")], "cc2")
    response = client.get(ops_url("cc1"), params={"callerPhoneNumber": "*8888"}, headers=RECORDER)
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["recordings"]] == ["a"]
    everything = client.get(ops_url("cc2"), params={"startTime": "0"}, headers=RECORDER)
    assert [r["id"] for r in everything.json()["recordings"]] == ["c"]
    assert_error(client.get(ops_url("cc1"), headers=RECORDER), 400, 1)
    assert_error(client.get(ops_url("cc1"), params={"limit": "1"}, headers=RECORDER), 400, 1)
    assert_error(client.get(ops_url("cc1"), params={"startTime": "x"}, headers=RECORDER), 400, 2)


# --------------------------------------------------------------------------- delete


def test_delete(client: TestClient, settings: Settings) -> None:
    post_ok(client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3"}]))
    post_ok(client, local_recording("rec-1"), "cc2")
    assert upload(client, "rec-1", "a.mp3", b"bytes").status_code == 200
    path = stored(client, "rec-1")["mediaFiles"][0]["mediaDescriptor"]["path"]
    file = settings.resolved_media_dir / path
    assert file.read_bytes() == b"bytes"
    response = client.delete(ops_url("cc1", "rec-1"), headers=RECORDER)
    assert response.status_code == 200
    assert response.json() == {"statusCode": 0}
    assert absent(client, "rec-1")
    assert not file.exists()
    assert files_under(settings.resolved_media_dir) == set()
    assert not absent(client, "rec-1", "cc2")
    assert_error(client.delete(ops_url("cc1", "rec-1"), headers=RECORDER), 404, 6)
    assert_error(client.delete(ops_url("cc1", "never"), headers=RECORDER), 404, 6)
    assert_error(client.get("/api/v2/recordings/rec-1", headers=basic("alice")), 404, 6)


# --------------------------------------------------------------------------- upload


def test_upload_streams_into_the_local_store(client: TestClient, settings: Settings) -> None:
    post_ok(
        client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "type": "audio/mp3"}])
    )
    data = bytes(range(256)) * 1000
    chunks = iter([data[:100_000], data[100_000:200_000], data[200_000:]])
    response = upload(client, "rec-1", "a.mp3", chunks)
    assert response.status_code == 200, response.text
    assert response.json()["statusCode"] == 0
    [media] = stored(client, "rec-1")["mediaFiles"]
    assert media["size"] == str(len(data))
    assert media["type"] == "audio/mp3"
    assert media["mediaDescriptor"]["storage"] == "local"
    assert (settings.resolved_media_dir / media["mediaDescriptor"]["path"]).read_bytes() == data
    played = client.get("/api/v2/recordings/rec-1/play/a.mp3", headers=basic("alice"))
    assert played.content == data
    assert not any(p.startswith(".incoming/") for p in files_under(settings.resolved_media_dir))


def test_upload_creates_the_media_entry(client: TestClient) -> None:
    post_ok(client, local_recording("rec-1"))
    assert (
        upload(client, "rec-1", "b.wav", b"RIFF", headers={"Content-Type": "audio/wav"}).status_code
        == 200
    )
    assert upload(client, "rec-1", "c.ogg", b"OggS").status_code == 200
    media = {m["mediaId"]: m for m in stored(client, "rec-1")["mediaFiles"]}
    assert media["b.wav"]["type"] == "audio/wav"
    assert media["b.wav"]["size"] == "4"
    assert media["c.ogg"]["type"] == "audio/ogg"


def test_upload_replaces_bytes_and_survives_a_later_post(client: TestClient) -> None:
    post_ok(client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3"}]))
    assert upload(client, "rec-1", "a.mp3", b"first").status_code == 200
    assert upload(client, "rec-1", "a.mp3", b"second!").status_code == 200
    post_ok(client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "duration": "9"}]))
    [media] = stored(client, "rec-1")["mediaFiles"]
    assert media["size"] == "7"
    assert media["duration"] == "9"
    played = client.get("/api/v2/recordings/rec-1/play/a.mp3", headers=basic("alice"))
    assert played.status_code == 200
    assert played.content == b"second!"


def test_an_uploaded_file_is_what_an_export_gives_as_the_location(client: TestClient) -> None:
    sent = {"storage": "local", "path": "cc1/recorder/a.mp3"}
    post_ok(
        client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3", "mediaDescriptor": sent}])
    )
    [before] = as_posted(stored(client, "rec-1"))["mediaFiles"]
    assert before["mediaDescriptor"] == sent
    assert upload(client, "rec-1", "a.mp3", b"uploaded").status_code == 200
    exported = as_posted(stored(client, "rec-1"))
    [media] = exported["mediaFiles"]
    assert media["mediaDescriptor"] == {"storage": "local", "path": "cc1/rec-1/a.mp3"}
    post_ok(client, exported)  # imported again: still the uploaded bytes
    played = client.get("/api/v2/recordings/rec-1/play/a.mp3", headers=basic("alice"))
    assert played.content == b"uploaded"


def test_uploads_to_one_file_at_once_record_the_size_of_the_bytes_it_holds(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first upload's record is held back until the second published its file: without
    uploads to one file one after the other, the first's size was recorded over the
    second's bytes."""
    post_ok(client, local_recording("rec-1"))
    upsert = services.store.upsert
    calls: list[int] = []

    def slow_first(ccid: str, docs: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 1:
            time.sleep(0.5)  # the other upload publishes its file meanwhile, when it can
        return upsert(ccid, docs)

    monkeypatch.setattr(services.store, "upsert", slow_first)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(upload, client, "rec-1", "a.mp3", b"1" * 5)
        time.sleep(0.2)
        second = pool.submit(upload, client, "rec-1", "a.mp3", b"2" * 7)
        assert [first.result().status_code, second.result().status_code] == [200, 200]
    [media] = stored(client, "rec-1")["mediaFiles"]
    played = client.get("/api/v2/recordings/rec-1/play/a.mp3", headers=basic("alice"))
    assert (media["size"], played.content) == ("7", b"2" * 7)


def test_an_upload_whose_body_ends_early_is_400_and_keeps_nothing(
    client: TestClient, settings: Settings
) -> None:
    post_ok(client, local_recording("rec-1"))
    path = ops_url("cc1", "rec-1", "media", "a.mp3")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", RECORDER["Authorization"].encode()),
            (b"content-length", b"1000000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": b"x" * 300_000, "more_body": True},
        {"type": "http.disconnect"},  # the client half-closed: no more bytes
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(client.app, scope, receive, send)
    assert sent[0]["status"] == 400
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body == {
        "statusCode": 2,
        "statusMessage": "The upload ended before all of its bytes arrived",
    }
    assert files_under(settings.resolved_media_dir) == set()
    assert stored(client, "rec-1")["mediaFiles"] == []


def test_upload_size_limit(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    app = make_client(max_upload_bytes=100)
    post_ok(app, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3"}]))
    assert_error(upload(app, "rec-1", "a.mp3", b"x" * 101), 413, 2)
    assert_error(upload(app, "rec-1", "a.mp3", iter([b"x" * 60, b"x" * 60])), 413, 2)
    assert_error(upload(app, "rec-1", "b.mp3", iter([b"x" * 101])), 413, 2)
    [media] = stored(app, "rec-1")["mediaFiles"]
    assert "mediaDescriptor" not in media
    assert_error(app.get("/api/v2/recordings/rec-1/play/a.mp3", headers=basic("alice")), 404, 6)
    assert files_under(tmp_path / "app1" / "media") == set()
    assert upload(app, "rec-1", "a.mp3", b"x" * 100).status_code == 200


def test_upload_to_a_recording_deleted_meanwhile_is_404_and_leaves_no_file(
    client: TestClient, services: Services, settings: Settings
) -> None:
    post_ok(client, local_recording("rec-1", mediaFiles=[{"mediaId": "a.mp3"}]))

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        assert services.store.delete("cc1", "rec-1") is not None  # a delete, mid-upload
        yield b"y" * 1000

    assert_error(upload(client, "rec-1", "a.mp3", body()), 404, 6)
    assert absent(client, "rec-1")
    assert files_under(settings.resolved_media_dir) == set()


def test_upload_to_unknown_recording_is_404(client: TestClient, settings: Settings) -> None:
    post_ok(client, local_recording("rec-1"), "cc2")
    assert_error(upload(client, "nope", "a.mp3", b"x"), 404, 6)
    assert_error(upload(client, "rec-1", "a.mp3", b"x", ccid="cc1"), 404, 6)
    assert files_under(settings.resolved_media_dir) == set()


@pytest.mark.parametrize(
    "media_id",
    [
        "..",
        ".",
        "..%2F..%2Fevil",
        "a%2Fb.mp3",
        "%2E%2E",
        "a%5Cb.mp3",
        "a%00b.mp3",
        "..%5Cevil",
        "%C3%A9" * 128 + "evil",  # 260 bytes: more than a file name holds
    ],
)
def test_upload_with_unsafe_media_id_is_refused(
    client: TestClient, settings: Settings, tmp_path: Path, media_id: str
) -> None:
    post_ok(client, local_recording("rec-1"))
    response = upload(client, "rec-1", media_id, b"evil bytes")
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()) == {"statusCode", "statusMessage"}
    assert files_under(settings.resolved_media_dir) == set()
    assert not [p for p in tmp_path.rglob("*evil*")]
    assert stored(client, "rec-1")["mediaFiles"] == []


# --------------------------------------------------------------------------- CSRF


@pytest.fixture
def csrf_app(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(csrf=True)


def csrf_headers(app: TestClient, user: str) -> dict[str, str]:
    response = app.get("/api/v2/me", headers=basic(user))
    assert response.status_code == 200
    name = response.headers["X-CSRF-HEADER"]
    token = response.headers["X-CSRF-TOKEN"]
    assert name
    assert token
    return {name: token}


def test_csrf_missing_token_is_403(csrf_app: TestClient) -> None:
    for base in BASES:
        assert_error(post(csrf_app, local_recording("rec-1"), base=base), 403, 3)
    assert absent(csrf_app, "rec-1")
    assert_error(upload(csrf_app, "rec-1", "a.mp3", b"x"), 403, 3)
    assert_error(csrf_app.delete(ops_url("cc1", "rec-1"), headers=RECORDER), 403, 3)


def test_csrf_echoed_token_works(csrf_app: TestClient) -> None:
    token = csrf_headers(csrf_app, "recorder")
    headers = {**RECORDER, **token}
    for base in BASES:
        response = csrf_app.post(ops_url(base=base), json=local_recording("rec-1"), headers=headers)
        assert response.json() == {"statusCode": 0}
    put = csrf_app.put(ops_url("cc1", "rec-1", "media", "a.mp3"), content=b"x", headers=headers)
    assert put.status_code == 200, put.text
    assert csrf_app.get(ops_url("cc1", "rec-1"), headers=RECORDER).status_code == 200
    assert csrf_app.delete(ops_url("cc1", "rec-1"), headers=headers).json() == {"statusCode": 0}


@pytest.mark.parametrize("token_of", ["alice", "bob", "wrong"])
def test_csrf_token_of_someone_else_fails(csrf_app: TestClient, token_of: str) -> None:
    own = csrf_headers(csrf_app, "recorder")
    if token_of == "wrong":
        theirs = {name: "0" * len(value) for name, value in own.items()}
    else:
        theirs = csrf_headers(csrf_app, token_of)
        assert theirs != own
    response = csrf_app.post(
        ops_url(), json=local_recording("rec-1"), headers={**RECORDER, **theirs}
    )
    assert_error(response, 403, 3)
    assert absent(csrf_app, "rec-1")


def test_me_hands_out_csrf_headers_to_every_user(csrf_app: TestClient) -> None:
    tokens = {user: csrf_headers(csrf_app, user) for user in ("alice", "bob", "recorder")}
    assert len({json.dumps(t) for t in tokens.values()}) == 3
    assert csrf_headers(csrf_app, "alice") == tokens["alice"]


def test_csrf_token_with_non_ascii_bytes_is_403(csrf_app: TestClient) -> None:
    headers = {**RECORDER, "X-CSRF-TOKEN": "\u00e9t\u00e9".encode("latin-1")}
    response = csrf_app.post(ops_url(), json=local_recording("rec-1"), headers=headers)
    assert_error(response, 403, 3)


def test_lone_surrogate_beside_a_long_number_is_refused(client: TestClient) -> None:
    body = b'[{"id":"r1","region":"eu","startTime":"2013-05-17T19:45:32Z",'
    body += b'"callType":"12345678901234567","x":"\\ud800"}]'
    assert_error(post_raw(client, body), 400, 2)
    assert absent(client, "r1")


def test_an_escaped_backslash_before_u0000_is_no_nul(client: TestClient) -> None:
    doc = local_recording("rec-1", note="C:\\u0000x")
    post_ok(client, doc)
    assert stored(client, "rec-1")["note"] == "C:\\u0000x"
