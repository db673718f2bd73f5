"""Recordings as the console shows them: plain values ready for the templates.

Pure functions over documents as the external API shows them (``external_view``). Stored
fields are kept as recorders sent them, so nothing here trusts a field's type; the templates
escape every value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from callrec.errors import InvalidParameter
from callrec.model import FIELD_ORDER
from callrec.query import format_instant, parse_instant
from callrec.store import Document

# Top-level fields the recording page shows in their own places.
SHOWN_FIELDS = frozenset(FIELD_ORDER)


def instant_ms(value: object) -> int | None:
    """Epoch milliseconds of a stored instant, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value, "time")
    except InvalidParameter:
        return None


def when(ms: int | None) -> str:
    """``2013-05-17 19:45:32`` (UTC), or an empty string."""
    if ms is None:
        return ""
    text = format_instant(ms)
    return f"{text[:10]} {text[11:19]}"


def iso(ms: int | None) -> str:
    """The machine-readable form for ``<time datetime=...>``."""
    return "" if ms is None else format_instant(ms)[:23] + "Z"


def duration(ms: int | None) -> str:
    """``4:28`` or ``1:02:03``; empty when unknown."""
    if ms is None or ms < 0:
        return ""
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


def text(value: object) -> str:
    """A stored value as text: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def size(value: object) -> str:
    """``480 kB`` from a byte count given as a string or a number."""
    try:
        count = int(str(value))
    except ValueError:
        return text(value)
    amount, unit = float(count), "bytes"
    for bigger in ("kB", "MB", "GB", "TB"):
        if amount < 1000:
            break
        amount, unit = amount / 1000, bigger
    if unit == "bytes":
        return f"{count} bytes"
    return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"


@dataclass(frozen=True, slots=True)
class Contact:
    """One participant of a call, as eventHistory names them."""

    key: str
    name: str
    kind: str


def contact_of(event: object) -> Contact | None:
    if not isinstance(event, dict) or not isinstance(event.get("contact"), dict):
        return None
    contact: dict[str, Any] = event["contact"]
    first, last = text(contact.get("firstName")).strip(), text(contact.get("lastName")).strip()
    user, phone = text(contact.get("userName")).strip(), text(contact.get("phoneNumber")).strip()
    kind = text(contact.get("type")).strip()
    name = " ".join(part for part in (first, last) if part) or user or phone or kind or "Unknown"
    key = "\0".join((kind, user or phone, first, last))
    return Contact(key, name, kind)


def participants(doc: Document) -> list[Contact]:
    """Everyone in eventHistory, once each, in order of first appearance."""
    seen: dict[str, Contact] = {}
    events = doc.get("eventHistory")
    for event in events if isinstance(events, list) else []:
        contact = contact_of(event)
        if contact is not None and contact.key not in seen:
            seen[contact.key] = contact
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class MediaView:
    media_id: str
    type: str
    size: str
    duration: str
    start: str
    stop: str
    url: str
    player: str  # "audio", "video" or "" (download only)


def media_view(media: dict[str, Any]) -> MediaView:
    kind = text(media.get("type")).strip().lower()
    player = ""
    if "pkcs7" not in media:  # encrypted media is served as stored: nothing to play
        player = "video" if kind.startswith("video/") else "audio"
    length = media.get("duration")
    return MediaView(
        media_id=text(media.get("mediaId")),
        type=text(media.get("type")),
        size=size(media["size"]) if "size" in media else "",
        duration=duration(int(length)) if isinstance(length, str) and length.isdigit() else "",
        start=when(instant_ms(media.get("startTime"))),
        stop=when(instant_ms(media.get("stopTime"))),
        url=text(media.get("mediaUri")),
        player=player,
    )


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One line of the results table, or the head of the recording page."""

    id: str
    caller: str
    dialed: str
    start: str
    start_iso: str
    stop: str
    stop_iso: str
    duration: str
    in_progress: bool
    participants: list[Contact]
    media: list[MediaView]
    region: str
    call_type: str
    extra: list[tuple[str, str]]

    @property
    def media_summary(self) -> str:
        """``2 · audio/wav`` for the results table."""
        if not self.media:
            return "none"
        kinds = sorted({m.type for m in self.media if m.type})
        return f"{len(self.media)} · {', '.join(kinds)}" if kinds else str(len(self.media))


def recording_row(doc: Document) -> RecordingRow:
    start, stop = instant_ms(doc.get("startTime")), instant_ms(doc.get("stopTime"))
    files = doc.get("mediaFiles")
    return RecordingRow(
        id=text(doc.get("id")),
        caller=text(doc.get("callerPhoneNumber")),
        dialed=text(doc.get("dialedPhoneNumber")),
        start=when(start),
        start_iso=iso(start),
        stop=when(stop),
        stop_iso=iso(stop),
        duration=duration(stop - start) if start is not None and stop is not None else "",
        in_progress=stop is None,
        participants=participants(doc),
        media=[media_view(m) for m in files if isinstance(m, dict)]
        if isinstance(files, list)
        else [],
        region=text(doc.get("region")),
        call_type=text(doc.get("callType")),
        extra=[(key, text(value)) for key, value in doc.items() if key not in SHOWN_FIELDS],
    )


@dataclass(frozen=True, slots=True)
class EventRow:
    at: str
    offset: str
    event: str
    name: str
    kind: str


def event_rows(doc: Document) -> list[EventRow]:
    """eventHistory as a table, times relative to the start of the call."""
    start = instant_ms(doc.get("startTime"))
    rows = []
    events = doc.get("eventHistory")
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        at = instant_ms(event.get("occurredAt"))
        contact = contact_of(event)
        offset = ""
        if at is not None and start is not None:
            offset = ("-" if at < start else "") + duration(abs(at - start))
        rows.append(
            EventRow(
                at=when(at) or text(event.get("occurredAt")),
                offset=offset,
                event=text(event.get("event")),
                name=contact.name if contact else "",
                kind=contact.kind if contact else "",
            )
        )
    return rows
