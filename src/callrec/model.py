"""Recording documents: validating what recorders send, merging repeats, deriving index keys.

Pure functions over plain dicts (the JSON as stored). The store persists what these return;
the HTTP layer never reshapes a recording itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import orjson

from callrec.doccodec import pack, unpack
from callrec.errors import InvalidParameter, MissingParameter
from callrec.query import (
    canonical_instant,
    normalise_phone,
    parse_instant,
    recording_names,
)

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
# The recorder's file name: no path separators, no control characters, not "." or "..".
# U+FFFD is what undecodable bytes in a URL become: never a real file name.
MEDIA_ID_PATTERN = re.compile(r"[^/\\\x00-\x1f\x7f\ufffd]{1,255}")
MAX_TEXT = 4096
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


def is_safe_name(value: str, pattern: re.Pattern[str] = ID_PATTERN) -> bool:
    """True when ``value`` can name a recording (or media file) and a directory entry: at
    most 255 bytes in UTF-8, which file systems allow a name (63 characters take at most
    252)."""
    return (
        bool(pattern.fullmatch(value))
        and value not in (".", "..")
        and (len(value) <= 63 or len(value.encode("utf-8", "surrogatepass")) <= 255)
    )


class IndexKeys(NamedTuple):
    """What the store indexes a recording by, derived from its document. A tuple: an
    import's workers pass one per recording to the writing process, and a tuple crosses
    (pickles) in half the time of a dataclass."""

    id: str
    region: str | None
    start_ms: int
    stop_ms: int | None
    caller: str
    dialed: str
    names: list[str]


def index_keys(doc: dict[str, Any]) -> IndexKeys:
    stop = doc.get("stopTime")
    return _keys(
        doc,
        parse_instant(doc["startTime"], "startTime"),
        parse_instant(stop, "stopTime") if stop else None,
    )


def _keys(doc: dict[str, Any], start_ms: int, stop_ms: int | None) -> IndexKeys:
    return IndexKeys(
        id=doc["id"],
        region=doc.get("region"),
        start_ms=start_ms,
        stop_ms=stop_ms,
        caller=normalise_phone(doc.get("callerPhoneNumber") or ""),
        dialed=normalise_phone(doc.get("dialedPhoneNumber") or ""),
        names=recording_names(doc),
    )


def _text(value: Any, name: str, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        if required:
            raise MissingParameter(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"{name} must be a string")
    if len(value) > limit:
        raise InvalidParameter(f"{name} is longer than {limit} characters")
    return value


def _instant(value: Any, name: str) -> str | None:
    if type(value) is not str or len(value) > 64:
        value = _text(value, name, limit=64)  # None, or what is wrong with it
        if value is None:
            return None
    return canonical_instant(value, name)


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidParameter(f"{name} must be an object")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidParameter(f"{name} must be a list")
    return value


def _media_file(raw: Any, where: str) -> dict[str, Any]:
    media = dict(_object(raw, where))
    media_id = _text(media.get("mediaId"), f"{where}.mediaId", required=True, limit=255)
    if not is_safe_name(media_id or "", MEDIA_ID_PATTERN):
        raise InvalidParameter(f"{where}.mediaId is not a valid file name")
    for key in ("startTime", "stopTime"):
        if key in media:
            media[key] = _instant(media[key], f"{where}.{key}")
    for key in ("type", "callUUID", "duration", "size", "mediaUri"):
        _text(media.get(key), f"{where}.{key}")
    if "mediaDescriptor" in media:
        descriptor = _object(media["mediaDescriptor"], f"{where}.mediaDescriptor")
        _text(descriptor.get("storage"), f"{where}.mediaDescriptor.storage", required=True)
        _text(descriptor.get("path"), f"{where}.mediaDescriptor.path")
    return media


_CONTACT_TEXT = ("userName", "firstName", "lastName", "phoneNumber", "type")


def _event(raw: Any, index: int) -> dict[str, Any]:
    # Recordings carry several events of five contact fields each: a contact field's name
    # for a message is only built when there is something wrong to say.
    if not isinstance(raw, dict):
        raise InvalidParameter(f"eventHistory[{index}] must be an object")
    event = dict(raw)
    if "occurredAt" in event:
        try:
            event["occurredAt"] = _instant(event["occurredAt"], "occurredAt")
        except InvalidParameter:  # checked again, to name the event in the message
            _instant(event["occurredAt"], f"eventHistory[{index}].occurredAt")
            raise
    if "contact" in event:
        contact = event["contact"]
        if type(contact) is not dict:
            _object(contact, f"eventHistory[{index}].contact")
        fields: dict[str, Any] = contact  # a dict's own lookups, not any mapping's (mypyc)
        for key in _CONTACT_TEXT:
            value = fields.get(key)
            if value is not None and (type(value) is not str or len(value) > 512):
                _text(value, f"eventHistory[{index}].contact.{key}", limit=512)
    return event


def validate_recording(raw: Any, ccid: str) -> dict[str, Any]:
    """Check one recording as posted to the ops API and return it with normalised times.

    Raises ``MissingParameter`` (statusCode 1) or ``InvalidParameter`` (statusCode 2).
    Media locations are checked later, against the configured storages.
    """
    doc = dict(_object(raw, "recording"))
    rec_id = _text(doc.get("id"), "id", required=True, limit=128)
    if not is_safe_name(rec_id or ""):
        raise InvalidParameter("id must be 1-128 characters of [A-Za-z0-9._-]")
    _text(doc.get("region"), "region", required=True, limit=128)
    if doc.get("ccid") is not None and doc["ccid"] != ccid:
        raise InvalidParameter("ccid in the body does not match the contact center in the URL")
    for key in ("callerPhoneNumber", "dialedPhoneNumber", "callType"):
        _text(doc.get(key), key, limit=256)
    for key in ("startTime", "stopTime"):
        if key in doc:
            doc[key] = _instant(doc[key], key)
    media = [
        _media_file(m, f"mediaFiles[{i}]")
        for i, m in enumerate(_list(doc.get("mediaFiles"), "mediaFiles"))
    ]
    if len({m["mediaId"] for m in media}) != len(media):
        raise InvalidParameter("mediaFiles contains the same mediaId twice")
    doc["mediaFiles"] = media
    events = _list(doc.get("eventHistory"), "eventHistory")
    doc["eventHistory"] = [_event(e, i) for i, e in enumerate(events)]
    return doc


def _widest(values: Iterable[str | None], pick: Any) -> tuple[int, str] | None:
    """The earliest (``pick=min``) or latest of the times given, in ms and as given."""
    known = [(parse_instant(v, "time"), v) for v in values if v]
    return pick(known) if known else None


def _event_key(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def _distinct(events: list[Any]) -> bool:
    """Whether no two of a few events can be identical: JSON-identical events decode to equal
    dicts, so when no two are equal (most differ in their first field) none needs its
    canonical JSON made."""
    if len(events) > 8:
        return False
    return all(event not in events[i + 1 :] for i, event in enumerate(events))  # by ==


def merge_recordings(existing: dict[str, Any] | None, incoming: dict[str, Any]) -> dict[str, Any]:
    """The document after ``incoming`` is posted over ``existing`` (SPEC §5 merge rules).

    Top-level fields given replace; media files upsert by mediaId (fields merged, so a
    location set by an upload survives a later post without one); events append unless an
    identical one is there; startTime/stopTime widen. Raises ``MissingParameter`` when no
    startTime is given or derivable.
    """
    return _merge(existing, incoming)[0]


def _merge(
    existing: dict[str, Any] | None, incoming: dict[str, Any]
) -> tuple[dict[str, Any], int, int | None]:
    """``merge_recordings``, and the merged start and stop in epoch ms."""
    if existing is None:  # every field the incoming one (the four below are set again)
        merged: dict[str, Any] = dict(incoming)
        media: dict[str, dict[str, Any]] = {}
        events: list[Any] = []
        starts: list[str | None] = []
        stops: list[str | None] = []
    else:
        merged = dict(existing)
        for key, value in incoming.items():
            if key not in ("mediaFiles", "eventHistory", "startTime", "stopTime"):
                merged[key] = value
        media = {m["mediaId"]: dict(m) for m in merged.get("mediaFiles", [])}
        events = list(merged.get("eventHistory", []))
        starts, stops = [merged.get("startTime")], [merged.get("stopTime")]
    for m in incoming.get("mediaFiles", []):
        media[m["mediaId"]] = {**media[m["mediaId"]], **m} if m["mediaId"] in media else dict(m)
    merged["mediaFiles"] = list(media.values())
    added = incoming.get("eventHistory", [])
    if not events and _distinct(added):
        events = list(added)
    else:
        seen = {_event_key(e) for e in events}
        for event in added:
            if (digest := _event_key(event)) not in seen:
                seen.add(digest)
                events.append(event)
    merged["eventHistory"] = events
    # The recording spans everything known of it: the times given and every media file.
    starts += [incoming.get("startTime"), *(m.get("startTime") for m in merged["mediaFiles"])]
    stops += [incoming.get("stopTime"), *(m.get("stopTime") for m in merged["mediaFiles"])]
    start, stop = _widest(starts, min), _widest(stops, max)
    if start is None:
        raise MissingParameter("startTime is required when no media file gives one")
    merged["startTime"] = start[1]
    if stop is None:
        merged.pop("stopTime", None)
    elif stop[0] < start[0]:
        raise InvalidParameter("stopTime is before startTime")
    else:
        merged["stopTime"] = stop[1]
    return ordered(merged), start[0], None if stop is None else stop[0]


class Stored:
    """A recording as a store keeps it: its index keys, its JSON and its stored form
    (``doccodec``). Whichever of the three is missing is made from another when asked for:
    an import's workers hand over the stored form alone, and most recordings are written
    without their document ever being decoded again."""

    __slots__ = ("_blob", "_doc", "_packed", "keys")

    def __init__(
        self,
        keys: IndexKeys,
        blob: bytes | None = None,
        doc: dict[str, Any] | None = None,
        *,
        packed: bytes | None = None,
    ) -> None:
        assert blob is not None or packed is not None
        self.keys = keys
        self._blob = blob
        self._doc = doc
        self._packed = packed

    @property
    def blob(self) -> bytes:
        if self._blob is None:
            assert self._packed is not None
            self._blob = unpack(self._packed)
        return self._blob

    @property
    def packed(self) -> bytes:
        if self._packed is None:
            self._packed = pack(self.blob)
        return self._packed

    @property
    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = orjson.loads(self.blob)
        return self._doc


def to_store(existing: dict[str, Any] | None, incoming: dict[str, Any]) -> Stored:
    """``incoming`` merged over ``existing``, ready to store. With nothing existing it needs
    nothing from the store, so import's workers compute it ahead."""
    doc, start_ms, stop_ms = _merge(existing, incoming)
    return Stored(_keys(doc, start_ms, stop_ms), orjson.dumps(doc), doc)


def item_id(item: Mapping[str, Any] | Stored) -> str:
    """The id of a recording to save: a document's, or one stored ahead's."""
    return item.keys.id if isinstance(item, Stored) else str(item["id"])


def merge_stored(
    existing: dict[str, Any] | Stored | None, incoming: dict[str, Any] | Stored
) -> Stored:
    """``incoming`` saved over ``existing`` (a stored document, or one saved earlier in the
    same batch). A ``Stored`` incoming was computed ahead as ``to_store(None, doc)``: taken
    as it is when nothing exists, its document merged otherwise."""
    if isinstance(existing, Stored):
        existing = existing.doc
    if isinstance(incoming, Stored):
        return incoming if existing is None else to_store(existing, incoming.doc)
    return to_store(existing, incoming)


def unchanged(stored: object, incoming: Stored) -> bool:
    """Whether saving ``incoming`` over a recording's stored form (``stored``, its bytes as
    read) would write it back as it is: ``incoming`` was prepared ahead to that very form (an
    import run again over a file it loaded, in part or whole). Merging a recording over
    itself gives it back, so the store keeps what it has and writes nothing."""
    return isinstance(stored, bytes) and incoming.packed == stored


def ordered(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with its fields in SPEC §1 output order, other fields after."""
    head = {k: doc[k] for k in FIELD_ORDER if k in doc}
    if len(head) == len(doc):  # no other field
        return head
    return head | {k: v for k, v in doc.items() if k not in head}


def find_media(doc: Mapping[str, Any], media_id: str) -> dict[str, Any] | None:
    """The media file named ``media_id``, given with or without its extension."""
    files = [m for m in doc.get("mediaFiles", []) if isinstance(m, dict)]
    for m in files:
        if m.get("mediaId") == media_id:
            return m
    for m in files:
        stem, dot, _ = str(m.get("mediaId", "")).rpartition(".")
        if dot and stem == media_id:
            return m
    return None
