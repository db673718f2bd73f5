"""Deterministic, realistic demo data: recordings in the ops-create wire format, and audio.

One generator feeds ``callrec serve --demo``, the tests and the benchmarks, so it has to be
three things at once:

* **Deterministic.** Everything is drawn from ``random.Random`` instances seeded from the
  arguments (never the global generator, never the clock): the same arguments give the same
  bytes on every run and every platform.
* **Realistic enough to find bugs.** Callers and agents follow skewed (Zipf-like) frequencies,
  phone numbers come in the formats recorders really send (E.164, national, punctuated,
  international with spaces, short internal extensions, SIP URIs with letters), agent names mix
  common English names with non-ASCII ones from several scripts, call volume follows office
  hours, weekdays and a slow growth trend, and about 1% of calls are still in progress.
* **Fast.** Benchmarks generate millions of recordings, so the per-recording path is a handful
  of ``random()`` calls, table look-ups and f-strings; anything expensive (name pools, weight
  tables, timestamp tables, audio snippets) is built once and cached.

The "world" (agents, frequent callers, service numbers: ``callrec.demoworld``) depends only
on the contact center id, so every seed of one contact center sees the same staff and
customers; the seed varies the traffic and, with the contact center, the recording ids
(different seeds never share ids).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate, pairwise
from pathlib import Path
from statistics import NormalDist
from typing import Any

from callrec import demoworld
from callrec.demo_audio import demo_audio, wav_size

__all__ = ["DEMO_CCID", "DEMO_REGION", "demo_audio", "demo_jsonl", "demo_recordings"]

DEMO_CCID = "demo"
DEMO_REGION = "usw1"

# --------------------------------------------------------------------------------------------
# Time: calls span the three years ending 2026-06-30 (inclusive), in UTC.

_SPAN_START = datetime(2023, 7, 1, tzinfo=UTC)
_SPAN_END = datetime(2026, 7, 1, tzinfo=UTC)
_START_MS = int(_SPAN_START.timestamp()) * 1000
_SPAN_DAYS = (_SPAN_END - _SPAN_START).days
_SPAN_HOURS = _SPAN_DAYS * 24
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000

# Formatting instants with datetime.strftime costs microseconds; a per-day table of date
# strings plus integer arithmetic is several times faster. Two spare days cover calls that
# start on the last evening and run past midnight.
_DAYS = [(_SPAN_START + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(_SPAN_DAYS + 2)]

# Relative call volume by local hour (the demo contact center is on the US west coast, UTC-8;
# DST is ignored, a one-hour wobble nobody will notice in demo data).
_HOURLY_PROFILE = (
    0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.25, 0.60, 1.00, 1.20, 1.25, 1.20,
    1.00, 1.10, 1.20, 1.15, 1.00, 0.80, 0.50, 0.35, 0.25, 0.18, 0.12, 0.08,
)  # fmt: skip
_UTC_OFFSET_HOURS = -8
_WEEKDAY_FACTOR = (1.0, 1.05, 1.0, 1.0, 0.95, 0.35, 0.2)  # Monday first
# The day after US Thanksgiving: the retail peak every contact center dreads.
_PEAK_DAYS = {"2023-11-24", "2024-11-29", "2025-11-28"}

# Call length in seconds: log-normal around two minutes, clamped to 10 s .. 40 min.
_DURATION_MEDIAN_S = 120.0
_DURATION_SIGMA = 1.0
_DURATION_MIN_MS = 10_000
_DURATION_MAX_MS = 2_400_000
_DURATION_TABLE_SIZE = 4096

_IN_PROGRESS_RATE = 0.01

# --------------------------------------------------------------------------------------------
# Ids: 32 characters of Genesys base-32 ([0-9A-V], a subset of the SPEC's id alphabet).

_B32 = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # index hi*32+lo: two digits per look-up
_MASK55 = (1 << 55) - 1
# Odd multipliers (bijective modulo 2**55) from the SplitMix64 finaliser.
_MIX_A = (0x9E3779B97F4A7C15 & _MASK55) | 1
_MIX_B = (0xBF58476D1CE4E5B9 & _MASK55) | 1

# Who calls (callrec.demoworld): the share of calls from its frequent callers.
_FREQUENT_SHARE = 0.30


@cache
def _hour_cum() -> tuple[list[float], list[float]]:
    """Per-hour call-volume weights over the span and their running sum (for inverse CDF)."""
    weights: list[float] = []
    for h in range(_SPAN_HOURS):
        day = _SPAN_START + timedelta(hours=h)
        local = day + timedelta(hours=_UTC_OFFSET_HOURS)
        w = _HOURLY_PROFILE[local.hour] * _WEEKDAY_FACTOR[local.weekday()]
        if local.strftime("%Y-%m-%d") in _PEAK_DAYS:
            w *= 2.5
        w *= 0.7 + 0.6 * h / _SPAN_HOURS  # the business grows
        weights.append(w)
    return weights, list(accumulate(weights))


@cache
def _duration_table() -> list[int]:
    """Quantiles of the clamped log-normal call length in ms (indexing by random() samples it)."""
    normal = NormalDist()
    mu = math.log(_DURATION_MEDIAN_S)
    out = []
    for k in range(_DURATION_TABLE_SIZE):
        z = normal.inv_cdf((k + 0.5) / _DURATION_TABLE_SIZE)
        ms = int(math.exp(mu + _DURATION_SIGMA * z) * 1000)
        out.append(min(max(ms, _DURATION_MIN_MS), _DURATION_MAX_MS - 1000))
    return out


def _ts(ms: int) -> str:
    """Epoch ms (within the demo span) as the wire format ``yyyy-MM-ddTHH:mm:ss.SSS+0000``."""
    day, rem = divmod(ms - _START_MS, _DAY_MS)
    h, rem = divmod(rem, _HOUR_MS)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{_DAYS[day]}T{h:02d}:{m:02d}:{s:02d}.{milli:03d}+0000"


def _file_ts(ms: int) -> str:
    """Epoch ms as the recorder's file-name stamp ``yyyy-mm-dd_hh-mm-ss``."""
    day, rem = divmod(ms - _START_MS, _DAY_MS)
    h, rem = divmod(rem, _HOUR_MS)
    m, rem = divmod(rem, 60_000)
    return f"{_DAYS[day]}_{h:02d}-{m:02d}-{rem // 1000:02d}"


def _id_keys(seed: int, ccid: str) -> tuple[int, str]:
    """Seed- and ccid-derived (mixing offset, 10-char id infix): ids differ across runs."""
    digest = hashlib.blake2b(f"ids\0{ccid}\0{seed}".encode(), digest_size=16).digest()
    offset = int.from_bytes(digest[:8], "big") & _MASK55
    tag = int.from_bytes(digest[8:], "big") >> 14  # 50 bits
    infix = "".join(_B32_PAIRS[(tag >> s) & 1023] for s in (40, 30, 20, 10, 0))
    return offset, infix


def demo_recordings(
    count: int, *, seed: int = 1, ccid: str = DEMO_CCID, media: bool = True
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` demo recordings in the ops-create wire format (SPEC §1).

    Keys come in the order ``id, callerPhoneNumber, dialedPhoneNumber, startTime, stopTime,
    mediaFiles, eventHistory, region, callType``; ``stopTime`` is absent for the ~1% of calls
    still in progress. Start times ascend (an arrival process over 2023-07-01 .. 2026-06-30
    shaped by office hours), so the output can be streamed straight into a store.

    Ids are 32 base-32 characters like Genesys call UUIDs, unique within a run and, because
    the seed and ``ccid`` are mixed in, across runs with different seeds or contact centers.
    Same arguments, same output; every dict is freshly built, so callers may mutate them.

    With ``media`` each finished call has one media file (sometimes two, split at a
    transfer) named ``<id>_<yyyy-mm-dd_hh-mm-ss>.wav`` with no ``mediaDescriptor``/
    ``mediaUri`` (the caller uploads the bytes); its ``size`` is that of
    ``demo_audio(int(duration) / 1000)``. In-progress calls have no media yet (recorders
    post media when the recording completes). Without ``media``, ``mediaFiles`` is ``[]``.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    return _generate(count, seed, ccid, media)


def _generate(count: int, seed: int, ccid: str, media: bool) -> Iterator[dict[str, Any]]:
    """The generator behind demo_recordings (split out so bad arguments fail eagerly)."""
    world = demoworld.world(ccid)
    hour_w, hour_cum = _hour_cum()
    durations = _duration_table()
    offset, infix = _id_keys(seed, ccid)
    rng = random.Random(seed)
    r = rng.random
    people = world.people

    # Hot loop: bind everything to locals; attribute and global look-ups add up at 10M rows.
    pairs, b32 = _B32_PAIRS, _B32
    agents, agent_cum, agent_total = world.agents, world.agent_cum, world.agent_total
    n_agents_pool = len(agents)
    callers, caller_cum, caller_total = world.callers, world.caller_cum, world.caller_total
    dialed, dialed_cum, dialed_total = world.dialed, world.dialed_cum, world.dialed_total
    n_durations = len(durations)
    last_hour = len(hour_cum) - 1
    slot = hour_cum[-1] / count if count else 0.0
    ts, file_ts, region = _ts, _file_ts, DEMO_REGION
    hour = 0

    for i in range(count):
        # Id: a bijective mix of the counter (unique by construction) + run infix + counter.
        x = (i * _MIX_A + offset) & _MASK55
        x ^= x >> 29
        x = (x * _MIX_B) & _MASK55
        x ^= x >> 32
        c = i + 1
        rid = (
            f"0{pairs[(x >> 45) & 1023]}{pairs[(x >> 35) & 1023]}{pairs[(x >> 25) & 1023]}"
            f"{pairs[(x >> 15) & 1023]}{pairs[(x >> 5) & 1023]}{b32[x & 31]}{infix}LAES"
            f"{pairs[(c >> 20) & 1023]}{pairs[(c >> 10) & 1023]}{pairs[c & 1023]}"
        )

        # Start: the i-th of `count` evenly spaced quantiles (jittered within its slot) of the
        # hourly volume curve. Quantiles ascend, so the hour pointer only ever moves forward.
        q = (i + r()) * slot
        while hour < last_hour and hour_cum[hour] <= q:
            hour += 1
        before = hour_cum[hour - 1] if hour else 0.0
        start = _START_MS + hour * _HOUR_MS + int((q - before) / hour_w[hour] * _HOUR_MS)
        duration = durations[int(r() * n_durations)] + int(r() * 1000)
        stop = start + duration
        finished = r() >= _IN_PROGRESS_RATE

        if r() < _FREQUENT_SHARE:
            caller = callers[bisect_right(caller_cum, r() * caller_total)]
        else:
            caller = demoworld.caller(r, people)
        dnis = dialed[bisect_right(dialed_cum, r() * dialed_total)]
        if caller[:2] == "85" and len(caller) == 7:
            call_type = "Internal"
        else:
            call_type = "Inbound" if r() < 0.8 else "Outbound"

        # Agents: 1 (mostly), 2 or 3 (transfers; short calls are never transferred). The first
        # answers after a ring/IVR delay; each transfer lands later in the remaining call; a
        # warm transfer overlaps the previous agent by < 1/4 of what is left, which keeps every
        # event in time order and within [start, stop].
        y = r()
        n = 1 if y < 0.72 or duration < 30_000 else (2 if y < 0.93 else 3)
        joins = [start + int(duration * (0.02 + 0.1 * r()))]
        for _ in range(n - 1):
            prev = joins[-1]
            joins.append(prev + int((stop - prev) * (0.3 + 0.4 * r())))
        picked: list[tuple[str, str, str, str]] = []
        for _ in range(n):
            k = bisect_right(agent_cum, r() * agent_total)
            while agents[k] in picked:  # never the same agent twice in one call
                k = (k + 1) % n_agents_pool
            picked.append(agents[k])

        events: list[dict[str, Any]] = [
            {
                "occurredAt": ts(start),
                "event": "Joined",
                "contact": {"type": "External", "phoneNumber": caller},
                "calluuid": rid,
            }
        ]
        contacts: list[dict[str, str]] = []
        for k in range(n):
            phone, user, first, last = picked[k]
            contact = {
                "type": "Agent",
                "phoneNumber": phone,
                "userName": user,
                "firstName": first,
                "lastName": last,
            }
            contacts.append(contact)
            events.append(
                {"occurredAt": ts(joins[k]), "event": "Joined", "contact": contact, "calluuid": rid}
            )
            if k:
                # The previous agent leaves at the transfer (blind) or a little after (warm).
                at = joins[k]
                left = at + (int(r() * min(30_000, (stop - at) // 4)) if r() < 0.5 else 0)
                events.append(
                    {
                        "occurredAt": ts(left),
                        "event": "Left",
                        "contact": dict(contacts[k - 1]),  # fresh: callers may mutate events
                        "calluuid": rid,
                    }
                )
        if finished:
            events.append(
                {
                    "occurredAt": ts(stop),
                    "event": "Left",
                    "contact": dict(contacts[-1]),
                    "calluuid": rid,
                }
            )

        files: list[dict[str, Any]] = []
        if media and finished:
            cuts = [start, joins[1], stop] if n > 1 and r() < 0.35 else [start, stop]
            for fs, fe in pairwise(cuts):
                media_id = f"{rid}_{file_ts(fs)}.wav"
                if files and files[-1]["mediaId"] == media_id:  # both started in one second
                    media_id = f"{rid}_{file_ts(fs)}-{len(files) + 1}.wav"
                ms = fe - fs
                files.append(
                    {
                        "mediaId": media_id,
                        "type": "audio/wav",
                        "startTime": ts(fs),
                        "stopTime": ts(fe),
                        "callUUID": rid,
                        "duration": str(ms),
                        "size": str(wav_size(ms / 1000)),
                        "tenant": "Environment",
                        "ivrprofile": "CallRecProfile",
                        "parameters": {"ani": caller, "dnis": dnis},
                    }
                )

        rec: dict[str, Any] = {
            "id": rid,
            "callerPhoneNumber": caller,
            "dialedPhoneNumber": dnis,
            "startTime": ts(start),
        }
        if finished:
            rec["stopTime"] = ts(stop)
        rec["mediaFiles"] = files
        rec["eventHistory"] = events
        rec["region"] = region
        rec["callType"] = call_type
        yield rec


def demo_jsonl(path: Path, count: int, *, seed: int = 1, media: bool = False) -> int:
    """Write ``demo_recordings(count, seed=seed, media=media)`` to ``path`` as JSON lines.

    One ``json.dumps`` per line, UTF-8 with non-ASCII kept literal; returns the line count.
    """
    dumps = json.dumps
    written = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for rec in demo_recordings(count, seed=seed, media=media):
            f.write(dumps(rec, ensure_ascii=False))
            f.write("\n")
            written += 1
    return written
