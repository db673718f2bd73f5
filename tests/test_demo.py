"""Tests for callrec.demo: deterministic, realistic demo recordings and audio."""

from __future__ import annotations

import io
import json
import re
import statistics
import wave
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from callrec.demo import DEMO_CCID, DEMO_REGION, demo_audio, demo_jsonl, demo_recordings

KEYS = [
    "id",
    "callerPhoneNumber",
    "dialedPhoneNumber",
    "startTime",
    "stopTime",
    "mediaFiles",
    "eventHistory",
    "region",
    "callType",
]
SPEC_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
GENESYS_ID = re.compile(r"[0-9A-V]{32}")
WIRE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")
SPAN_START = datetime(2023, 7, 1, tzinfo=UTC)
SPAN_END = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(hours=1)  # calls may run past midnight
N = 3000


@pytest.fixture(scope="module")
def recs() -> list[dict[str, Any]]:
    return list(demo_recordings(N, media=False))


@pytest.fixture(scope="module")
def media_recs() -> list[dict[str, Any]]:
    return list(demo_recordings(600, seed=5, media=True))


def instant(text: str) -> datetime:
    assert WIRE_TIME.fullmatch(text), text
    return datetime.fromisoformat(text)  # the regex above pins the exact wire format


def agent_contacts(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["contact"] for e in rec["eventHistory"] if e["contact"]["type"] == "Agent"]


# -- determinism, count, ids ----------------------------------------------------------------------


def test_same_seed_same_output_and_other_seed_differs(recs: list[dict[str, Any]]) -> None:
    again = list(demo_recordings(N, media=False))
    assert again == recs
    assert json.dumps(again, ensure_ascii=False) == json.dumps(recs, ensure_ascii=False)
    other = list(demo_recordings(N, seed=2, media=False))
    assert other != recs
    # Different seeds never share ids, so several demo runs can be loaded side by side.
    assert not {r["id"] for r in other} & {r["id"] for r in recs}
    assert not {r["id"] for r in demo_recordings(50, ccid="cc2")} & {r["id"] for r in recs}


@pytest.mark.parametrize("count", [0, 1, 17])
def test_count(count: int) -> None:
    assert len(list(demo_recordings(count))) == count


def test_negative_count_fails_eagerly() -> None:
    with pytest.raises(ValueError, match="count"):
        demo_recordings(-1)


def test_ids_unique_and_valid(recs: list[dict[str, Any]]) -> None:
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == len(ids)
    for rid in ids:
        assert SPEC_ID.fullmatch(rid), rid
        assert GENESYS_ID.fullmatch(rid), rid


# -- shape ----------------------------------------------------------------------------------------


def test_key_order_and_constants(recs: list[dict[str, Any]]) -> None:
    for r in recs:
        expected = KEYS if "stopTime" in r else [k for k in KEYS if k != "stopTime"]
        assert list(r) == expected
        assert r["mediaFiles"] == []
        assert r["region"] == DEMO_REGION
        assert r["callType"] in {"Inbound", "Outbound", "Internal"}
    assert {r["callType"] for r in recs} == {"Inbound", "Outbound", "Internal"}


def test_times(recs: list[dict[str, Any]]) -> None:
    in_progress = 0
    for r in recs:
        start = instant(r["startTime"])
        assert SPAN_START <= start < SPAN_END
        if "stopTime" not in r:
            in_progress += 1
            continue
        length = instant(r["stopTime"]) - start
        assert timedelta(seconds=10) <= length <= timedelta(minutes=40)
    assert 0.002 * N <= in_progress <= 0.03 * N
    starts = [instant(r["startTime"]) for r in recs]
    assert max(starts) - min(starts) > timedelta(days=2 * 365)  # spread over the years
    lengths = sorted(
        (instant(r["stopTime"]) - instant(r["startTime"])).total_seconds()
        for r in recs
        if "stopTime" in r
    )
    assert statistics.median(lengths) < statistics.mean(lengths)  # skewed short


def test_events_in_order_within_the_call(recs: list[dict[str, Any]]) -> None:
    agents_per_call: Counter[int] = Counter()
    for r in recs:
        events = r["eventHistory"]
        times = [instant(e["occurredAt"]) for e in events]
        assert times == sorted(times)
        start = instant(r["startTime"])
        assert times[0] == start
        if "stopTime" in r:
            assert times[-1] <= instant(r["stopTime"])
        assert all(t >= start for t in times)
        assert events[0]["contact"] == {"type": "External", "phoneNumber": r["callerPhoneNumber"]}
        assert events[0]["event"] == "Joined"
        agents = agent_contacts(r)
        joined = [e["contact"]["userName"] for e in events[1:] if e["event"] == "Joined"]
        left = [e["contact"]["userName"] for e in events if e["event"] == "Left"]
        assert 1 <= len(joined) <= 3
        assert len(set(joined)) == len(joined)  # nobody twice in one call
        assert left == joined[: len(left)]  # agents leave in the order they joined
        assert len(left) == len(joined) - ("stopTime" not in r)
        for c in agents:
            assert list(c) == ["type", "phoneNumber", "userName", "firstName", "lastName"]
        agents_per_call[len(joined)] += 1
    assert set(agents_per_call) == {1, 2, 3}


def test_returned_dicts_are_independent() -> None:
    # Callers (the demo seeder) fill in sizes and descriptors in place: no sharing allowed.
    recs = list(demo_recordings(40, seed=9))
    nested = [e["contact"] for r in recs for e in r["eventHistory"]]
    nested += [f for r in recs for f in r["mediaFiles"]]
    assert len({id(d) for d in nested}) == len(nested)
    for d in nested:
        d["mutated"] = True
    assert "mutated" not in json.dumps(list(demo_recordings(40, seed=9)))


# -- variety and skew -----------------------------------------------------------------------------


def test_names_and_numbers_vary(recs: list[dict[str, Any]]) -> None:
    contacts = [c for r in recs for c in agent_contacts(r)]
    names = {c["firstName"] for c in contacts} | {c["lastName"] for c in contacts}
    assert any(not n.isascii() for n in names)
    assert any(re.search("[\u0400-\u04ff]", n) for n in names)  # Cyrillic
    assert any(re.search("[\u0370-\u03ff]", n) for n in names)  # Greek
    assert any(re.search("[\u4e00-\u9fff]", n) for n in names)  # CJK
    assert any(re.search("[a-zA-Z]", n) and not n.isascii() for n in names)  # accented Latin
    assert len({c["userName"] for c in contacts}) > 500

    callers = [r["callerPhoneNumber"] for r in recs]
    sip = [c for c in callers if re.search("[a-zA-Z]", c)]
    assert any(c.startswith("sip:") for c in sip)
    assert 0.005 * N <= len(sip) <= 0.05 * N
    assert any(re.fullmatch(r"\+1\d{10}", c) for c in callers)
    assert any(re.fullmatch(r"1\d{10}", c) for c in callers)
    assert any(re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", c) for c in callers)
    assert any(re.fullmatch(r"\d{7}", c) for c in callers)
    assert any(c.startswith("+") and " " in c for c in callers)

    dialed = Counter(r["dialedPhoneNumber"] for r in recs)
    assert 50 <= len(dialed) <= 300


def test_frequencies_are_skewed(recs: list[dict[str, Any]]) -> None:
    callers = Counter(r["callerPhoneNumber"] for r in recs)
    top = callers.most_common(1)[0][1]
    assert top >= 10 * statistics.median(callers.values())
    assert len(callers) > N / 2  # yet most callers are one-offs
    agents = Counter(c["userName"] for r in recs for c in agent_contacts(r))
    assert agents.most_common(1)[0][1] >= 4 * statistics.median(agents.values())


# -- media ----------------------------------------------------------------------------------------


def test_media_files(media_recs: list[dict[str, Any]]) -> None:
    counts: Counter[int] = Counter()
    for r in media_recs:
        files = r["mediaFiles"]
        if "stopTime" not in r:
            assert files == []  # recorders post media when the recording completes
            continue
        counts[len(files)] += 1
        assert files[0]["startTime"] == r["startTime"]
        assert files[-1]["stopTime"] == r["stopTime"]
        assert len({f["mediaId"] for f in files}) == len(files)
        for f in files:
            assert re.fullmatch(
                re.escape(r["id"]) + r"_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(-\d)?\.wav", f["mediaId"]
            )
            assert f["mediaId"][33:43] == f["startTime"][:10]
            assert f["type"] == "audio/wav"
            assert f["callUUID"] == r["id"]
            assert "mediaDescriptor" not in f
            assert "mediaUri" not in f
            ms = (instant(f["stopTime"]) - instant(f["startTime"])) / timedelta(milliseconds=1)
            assert int(f["duration"]) == ms > 0
            seconds = min(int(f["duration"]) / 1000, 30)
            assert int(f["size"]) == 44 + 2 * round(seconds * 8000)
    assert set(counts) == {1, 2}
    assert counts[1] > counts[2]


def test_media_size_matches_demo_audio(media_recs: list[dict[str, Any]]) -> None:
    files = [f for r in media_recs[:40] for f in r["mediaFiles"]]
    for f in files[:8]:
        assert len(demo_audio(int(f["duration"]) / 1000)) == int(f["size"])


# -- audio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "rate", "frames"),
    [(2.5, 8000, 20000), (12.523, 8000, 100184), (0, 8000, 0), (-3, 8000, 0), (1.0, 16000, 16000)],
)
def test_demo_audio_is_a_wav(seconds: float, rate: int, frames: int) -> None:
    data = demo_audio(seconds, sample_rate=rate)
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data), "rb") as w:
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        assert w.getframerate() == rate
        assert w.getnframes() == frames
        pcm = w.readframes(frames)
    assert len(pcm) == 2 * frames
    assert len(data) == 44 + 2 * frames


def test_demo_audio_capped_deterministic_and_audible() -> None:
    with wave.open(io.BytesIO(demo_audio(3600)), "rb") as w:
        assert w.getnframes() == 30 * 8000
    a = demo_audio(6, seed=3)
    assert a == demo_audio(6, seed=3)
    assert a != demo_audio(6, seed=4)
    with wave.open(io.BytesIO(a), "rb") as w:
        samples = memoryview(w.readframes(w.getnframes())).cast("h")
    peak = max(abs(s) for s in samples)
    assert 3000 < peak < 32767  # audible, soft, never clipping
    assert abs(samples[-1]) < 100  # faded out, no click at the cut
    with pytest.raises(ValueError, match="finite"):
        demo_audio(float("nan"))
    with pytest.raises(ValueError, match="sample_rate"):
        demo_audio(1, sample_rate=100)


# -- JSON lines -----------------------------------------------------------------------------------


def test_demo_jsonl_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    assert demo_jsonl(path, 250, seed=4) == 250
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) == 250
    assert [json.loads(line) for line in lines] == list(demo_recordings(250, seed=4, media=False))
    assert "\\u" not in text  # non-ASCII written as UTF-8, not escaped
    assert not text.isascii()
    assert demo_jsonl(tmp_path / "m.jsonl", 3, media=True) == 3
    first = json.loads((tmp_path / "m.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["mediaFiles"] or "stopTime" not in first


def test_default_ccid() -> None:
    assert DEMO_CCID == "demo"
    assert list(demo_recordings(5, ccid=DEMO_CCID)) == list(demo_recordings(5))
