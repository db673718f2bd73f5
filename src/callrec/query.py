"""Search semantics of ``GET /recordings?<query>`` (SPEC §3), as pure functions.

This module owns *what* a query means: how request parameters are validated and
normalised, how phone numbers, names and instants compare, and a small reference
matcher (:func:`matches`) over a recording document as stored. It does no I/O; the
storage layer translates a :class:`RecordingQuery` into SQL (using :func:`to_glob`,
:func:`fold_name` and :func:`recording_names`) and tests check the SQL against
:func:`matches`.

Summary of the rules:

* Phone numbers are compared in their ASCII alphanumeric form, case-sensitively; the
  request value may contain ``*`` (any run of characters, including none) and must match
  the whole stored value.
* ``userName`` is a small grammar of OR-ed AND-groups of terms; a term matches a whole
  ``userName``/``firstName``/``lastName`` of some contact, case-insensitively (Unicode
  case folding of the NFC form), with the same ``*`` wildcard.
* ``startTime``/``endTime`` are epoch milliseconds, ``yyyy-MM-dd`` or an ISO-8601 date-time;
  instants are handled as integer epoch milliseconds (UTC) everywhere.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from callrec.errors import InvalidParameter, MissingParameter

__all__ = [
    "MAX_INSTANT_MS",
    "MAX_PARAMETER_LENGTH",
    "MIN_INSTANT_MS",
    "QUERY_PARAMETERS",
    "RecordingQuery",
    "canonical_instant",
    "fold_name",
    "format_instant",
    "matches",
    "normalise_phone",
    "parse_instant",
    "parse_phone_pattern",
    "parse_query",
    "parse_user_query",
    "recording_names",
    "to_glob",
    "user_query_matches",
    "wildcard_match",
]

QUERY_PARAMETERS: tuple[str, ...] = (
    "callerPhoneNumber",
    "dialedPhoneNumber",
    "startTime",
    "endTime",
    "userName",
)
"""The recognised query parameters, in the order they are validated."""

MAX_PARAMETER_LENGTH = 1024
"""Longer parameter values are rejected: no legitimate query needs more, and it bounds
the matching work a single request can ask for."""

_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()

MIN_INSTANT_MS: Final = (datetime(1, 1, 1) - _EPOCH) // timedelta(milliseconds=1)
"""Epoch milliseconds of 0001-01-01T00:00:00.000Z, the earliest representable instant."""

MAX_INSTANT_MS: Final = (datetime(9999, 12, 31, 23, 59, 59, 999000) - _EPOCH) // timedelta(
    milliseconds=1
)
"""Epoch milliseconds of 9999-12-31T23:59:59.999Z, the latest representable instant."""

# Java's ZoneOffset (what a GWS server parses with) caps offsets at ±18:00.
_MAX_OFFSET_MINUTES: Final = 18 * 60

# Explicit [0-9] rather than \d: \d would accept any Unicode digit ("١٢٣").
_CANONICAL_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}\+0000"
)  # format_instant's output (a time of day that exists: only the day is left to check)
_EPOCH_MS_RE: Final = re.compile(r"-?[0-9]+")
_DATE_RE: Final = re.compile(r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})")
_DATETIME_RE: Final = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})"
    r"T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
    r"(?:\.(?P<frac>[0-9]{1,9}))?"
    # A space stands for "+": GWS clients send "...+0000" unencoded in query strings, and
    # form decoding turns the "+" into a space.
    r"(?P<zone>Z|(?P<sign>[+ -])(?P<oh>[0-9]{2})(?::?(?P<om>[0-9]{2}))?)?"
)

_PHONE_DROP_RE: Final = re.compile(r"[^A-Za-z0-9]+")
_PATTERN_DROP_RE: Final = re.compile(r"[^A-Za-z0-9*]+")
_STAR_RUN_RE: Final = re.compile(r"\*{2,}")

_AND: Final = "AND"

# Fields of eventHistory[*].contact that userName searches.
_NAME_FIELDS: Final = ("userName", "firstName", "lastName")


# --------------------------------------------------------------------------- phones


def normalise_phone(value: str) -> str:
    """Reduce a phone number to its ASCII letters and digits, case kept.

    ``"+1 (650) 466-8888"`` → ``"16504668888"``; ``"sip:Alice@x"`` → ``"sipAlicex"``.
    """
    return _PHONE_DROP_RE.sub("", value)


def parse_phone_pattern(value: str, name: str) -> str:
    """Normalise a phone-number request value into a wildcard pattern.

    Keeps ASCII letters, digits and ``*``, and collapses runs of ``*`` (they mean the
    same as one). A lone ``*`` is allowed and matches any number, including an empty
    one. Raises :class:`InvalidParameter` naming ``name`` when nothing is left.
    """
    pattern = _collapse_stars(_PATTERN_DROP_RE.sub("", value))
    if not pattern:
        raise InvalidParameter(f"Invalid {name}: it must contain a letter, a digit or '*'")
    return pattern


def _collapse_stars(value: str) -> str:
    return _STAR_RUN_RE.sub("*", value)


# --------------------------------------------------------------------------- wildcards


def wildcard_match(pattern: str, value: str) -> bool:
    """Whether ``pattern`` matches the whole of ``value``.

    ``*`` stands for any run of characters (including none); every other character is
    literal and compared case-sensitively. This is the greedy algorithm: the text
    before the first ``*`` must be a prefix, the text after the last ``*`` a suffix,
    and each piece in between is taken at its leftmost occurrence after the previous
    one. Leftmost is always safe because a ``*`` can absorb whatever is skipped, so
    there is no backtracking and the cost is at most O(len(pattern) * len(value)).
    """
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == value
    first, *middle, last = pieces
    if len(first) + len(last) > len(value):
        # Prefix and suffix would overlap: "ab*ba" must not match "aba".
        return False
    if not (value.startswith(first) and value.endswith(last)):
        return False
    pos, end = len(first), len(value) - len(last)
    for piece in middle:
        if not piece:
            continue
        found = value.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def to_glob(pattern: str) -> str:
    """Translate a ``*``-wildcard pattern into an SQLite ``GLOB`` pattern.

    ``*`` stays the GLOB wildcard; the other GLOB metacharacters are made literal by
    wrapping them in a one-character class: ``?`` → ``[?]`` and ``[`` → ``[[]``. ``]``,
    ``^`` and ``-`` are literal outside a class and need nothing. GLOB is
    case-sensitive and works on whole Unicode characters, like :func:`wildcard_match`.
    (Values bound to GLOB must not contain NUL, which SQLite treats as the end of the
    string; :func:`parse_query` rejects NUL.)
    """
    return pattern.replace("[", "[[]").replace("?", "[?]")


# --------------------------------------------------------------------------- names


# Agents' names recur on recording after recording: an import folds each once.
@functools.lru_cache(maxsize=65536)
def fold_name(value: str) -> str:
    """The case-insensitive comparison form of a name, for any script.

    NFC, then Unicode full case folding, then NFC again: ``"STRASSE"`` and ``"straße"``
    both give ``"strasse"``, ``"ÉLODIE"`` gives ``"élodie"`` whether the input is NFC or
    NFD. The final NFC matters where case folding leaves a decomposed sequence: without
    it ``"ΐ"`` (U+0390) and ``"Ϊ́"`` (capital iota, diaeresis, acute) would fold
    differently although they are the same letter in two cases.
    """
    if value.isascii():  # most names: case folding is lowering, and NFC changes nothing
        return value.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def parse_user_query(value: str) -> tuple[tuple[str, ...], ...]:
    """Parse a ``userName`` request value into OR-ed AND-groups of folded terms.

    Surrounding whitespace is ignored and tokens are split on any whitespace run. The
    uppercase word ``AND`` joins terms into a group; otherwise whitespace separates
    alternatives. ``AND`` binds tighter: ``"Ann Bob AND Eve"`` →
    ``(("ann",), ("bob", "eve"))``. Terms are :func:`fold_name`-ed with ``*`` runs
    collapsed. Repeated terms within a group and repeated groups are dropped, first
    occurrence kept, since they cannot change the result.

    Raises :class:`InvalidParameter` when the value is blank or an ``AND`` lacks a term
    on either side (``"AND x"``, ``"x AND"``, ``"x AND AND y"``, ``"AND"``).
    """
    tokens = value.split()
    if not tokens:
        raise InvalidParameter("Invalid userName: it must contain at least one name")
    groups: list[list[str]] = []
    joining = False  # the previous token was AND
    for token in tokens:
        if token == _AND:
            if joining or not groups:
                raise InvalidParameter("Invalid userName: 'AND' must stand between two names")
            joining = True
            continue
        term = _collapse_stars(fold_name(token))
        if joining:
            if term not in groups[-1]:
                groups[-1].append(term)
            joining = False
        else:
            groups.append([term])
    if joining:
        raise InvalidParameter("Invalid userName: 'AND' must stand between two names")
    unique: dict[tuple[str, ...], None] = dict.fromkeys(tuple(group) for group in groups)
    return tuple(unique)


def recording_names(recording: Mapping[str, Any]) -> list[str]:
    """The folded names a ``userName`` query is matched against.

    :func:`fold_name` of every ``userName``, ``firstName`` and ``lastName`` string of every
    ``eventHistory[*].contact``, with surrounding whitespace stripped (a recorder's
    ``"Alice "`` is still Alice), blank ones skipped, deduplicated in order of first
    appearance. Malformed shapes (``eventHistory`` not a list, an event or contact not
    an object, non-string values) are skipped rather than failing: the document is
    whatever a recorder sent.
    """
    history = recording.get("eventHistory")
    if not isinstance(history, list | tuple):
        return []
    names: dict[str, None] = {}
    for event in history:
        # A dict is a Mapping: asking the ABC costs more than the rest of the loop. Any other
        # mapping is copied (never in practice), so that what follows is a dict's own
        # lookups, which mypyc compiles to far less than any mapping's.
        if type(event) is not dict:
            if not isinstance(event, Mapping):
                continue
            event = dict(event)
        entry: dict[str, Any] = event
        contact = entry.get("contact")
        if type(contact) is not dict:
            if not isinstance(contact, Mapping):
                continue
            contact = dict(contact)
        fields: dict[str, Any] = contact
        for field in _NAME_FIELDS:
            raw = fields.get(field)
            if isinstance(raw, str) and (raw := raw.strip()):
                names.setdefault(fold_name(raw), None)
    return list(names)


def user_query_matches(user: tuple[tuple[str, ...], ...], names: Sequence[str]) -> bool:
    """Whether some group has every term matching at least one of ``names``.

    ``names`` are folded (see :func:`recording_names`); different terms of a group may
    match different names, i.e. different contacts.
    """
    return any(
        all(any(wildcard_match(term, name) for name in names) for term in group) for group in user
    )


# --------------------------------------------------------------------------- instants


def parse_instant(value: object, name: str) -> int:
    """Parse a time parameter into epoch milliseconds (UTC).

    Accepted forms:

    * epoch milliseconds: an optional ``-`` and ASCII digits (``"0"``, ``"1368819932000"``);
    * a date ``yyyy-MM-dd``, meaning midnight UTC;
    * ``yyyy-MM-ddTHH:mm:ss`` with an optional fraction of 1-9 digits (truncated to
      milliseconds) and an optional zone ``Z``, ``±hhmm``, ``±hh:mm`` or ``±hh`` (at most
      ±18:00, as in Java); no zone means UTC.

    The instant must lie within years 1..9999 UTC. Anything else raises
    :class:`InvalidParameter` naming ``name``, and nothing else is ever raised.
    """
    if type(value) is str and len(value) == 28 and _CANONICAL_RE.fullmatch(value):
        # What callrec writes (every stored time): a recording's are parsed on each merge.
        try:
            return _canonical_ms(value)
        except ValueError:  # no such day
            raise _bad_instant(name) from None
    if not isinstance(value, str) or len(value) > MAX_PARAMETER_LENGTH:
        raise _bad_instant(name)
    try:
        ms = _parse_instant(value)
    except (ValueError, OverflowError):
        ms = None
    if ms is None or not MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
        raise _bad_instant(name)
    return ms


def canonical_instant(value: str, name: str) -> str:
    """``value`` as :func:`format_instant` writes it; raises as :func:`parse_instant` does.

    Recordings carry a handful of times each, nearly always written so already: those are
    only checked (a microsecond), not parsed and formatted again.
    """
    if len(value) == 28 and _CANONICAL_RE.fullmatch(value):
        try:
            _fromisoformat(value)  # the day exists
        except ValueError:
            raise _bad_instant(name) from None
        return value
    return format_instant(parse_instant(value, name))


def _bad_instant(name: str) -> InvalidParameter:
    return InvalidParameter(
        f"Invalid {name}: expected epoch milliseconds, a date yyyy-MM-dd "
        "or an ISO-8601 date-time such as 2013-05-17T19:45:32.000+0000"
    )


_fromisoformat = datetime.fromisoformat  # reads every form _CANONICAL_RE matches


def _canonical_ms(value: str) -> int:
    """Epoch ms of a value ``_CANONICAL_RE`` matches; ValueError when there is no such day.

    ``timestamp()`` is the seconds rounded to a double, and multiplying by 1000 rounds
    again: each rounding is relative (2^-53), under 0.03 ms at year 9999's 2.6e11 s, so the
    result is within 0.1 ms of a whole number of ms and rounding gives it exactly. A third
    of the cost of slicing out and converting each field."""
    return round(_fromisoformat(value).timestamp() * 1000)


# Query parameters repeat: remember the last few thousand. (Canonical times, all that stored
# recordings carry, are read before this, without it: each is new to a cache.)
@functools.lru_cache(maxsize=4096)
def _parse_instant(value: str) -> int | None:
    """Epoch ms of ``value``, or None when it has none of the accepted shapes.

    May raise ValueError for a well-shaped but impossible value (month 13, year 0).
    """
    if _EPOCH_MS_RE.fullmatch(value):
        return int(value)
    if m := _DATE_RE.fullmatch(value):
        day = date(int(m["y"]), int(m["mo"]), int(m["d"]))
        return (day.toordinal() - _EPOCH_ORDINAL) * 86_400_000
    m = _DATETIME_RE.fullmatch(value)
    if m is None:
        return None
    # The constructor validates every field (no month 13, hour 24 or leap second 60).
    local = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"]))
    # Integer arithmetic rather than datetime + tzinfo: an offset may push the UTC
    # instant just outside datetime's range, which the caller reports as invalid.
    seconds = (local.toordinal() - _EPOCH_ORDINAL) * 86_400 + (
        local.hour * 3600 + local.minute * 60 + local.second
    )
    millis = int((m["frac"] or "0")[:3].ljust(3, "0"))
    return seconds * 1000 + millis - _offset_minutes(m) * 60_000


def _offset_minutes(m: re.Match[str]) -> int:
    if m["sign"] is None:  # no zone, or "Z"
        return 0
    hours, minutes = int(m["oh"]), int(m["om"] or "0")
    total = hours * 60 + minutes
    if minutes > 59 or total > _MAX_OFFSET_MINUTES:
        raise ValueError("zone offset out of range")
    return -total if m["sign"] == "-" else total


@functools.lru_cache(maxsize=4096)
def format_instant(ms: int) -> str:
    """Format epoch milliseconds as ``yyyy-MM-ddTHH:mm:ss.SSS+0000`` (UTC).

    ``1368819932000`` → ``"2013-05-17T19:45:32.000+0000"``; instants before 1970 work too.
    Raises ValueError outside years 1..9999 (:data:`MIN_INSTANT_MS`..:data:`MAX_INSTANT_MS`),
    which :func:`parse_instant` never returns.
    """
    if not MIN_INSTANT_MS <= ms <= MAX_INSTANT_MS:
        raise ValueError(f"instant out of range: {ms}")
    # Floor division keeps the millisecond part non-negative for instants before 1970.
    seconds, millis = divmod(ms, 1000)
    t = _EPOCH + timedelta(seconds=seconds)
    # Explicit zero padding: strftime("%Y") does not pad years below 1000 on every libc.
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
        f"T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{millis:03d}+0000"
    )


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, slots=True)
class RecordingQuery:
    """A validated search; every criterion that is not None must hold."""

    caller: str | None = None
    """Wildcard pattern (:func:`parse_phone_pattern`) for the normalised callerPhoneNumber."""
    dialed: str | None = None
    """Wildcard pattern for the normalised dialedPhoneNumber."""
    start_from: int | None = None
    """Epoch ms; the recording's startTime must be at or after it."""
    end_before: int | None = None
    """Epoch ms; the recording's stopTime must be at or before it (none: no match)."""
    user: tuple[tuple[str, ...], ...] | None = None
    """OR-ed AND-groups of folded name patterns (:func:`parse_user_query`)."""

    def is_empty(self) -> bool:
        """Whether no criterion is set (such a query matches every recording)."""
        return (
            self.caller is None
            and self.dialed is None
            and self.start_from is None
            and self.end_before is None
            and self.user is None
        )


def parse_query(params: Mapping[str, str]) -> RecordingQuery:
    """Validate the recognised query parameters into a :class:`RecordingQuery`.

    Unrecognised keys are ignored. Raises :class:`MissingParameter` when none of
    :data:`QUERY_PARAMETERS` is present, and :class:`InvalidParameter` for a present
    value that is too long, contains NUL, U+FFFD (the trace of undecodable input) or a
    lone surrogate, or that its parser rejects. Parameters are checked in
    :data:`QUERY_PARAMETERS` order, so the first bad one is the one reported.
    """
    given: Mapping[str, object] = params  # whatever a caller passes, checked here
    present = {key: _checked(key, given[key]) for key in QUERY_PARAMETERS if key in given}
    if not present:
        raise MissingParameter(
            "The query needs at least one of these parameters: " + ", ".join(QUERY_PARAMETERS)
        )

    def phone(key: str) -> str | None:
        return parse_phone_pattern(present[key], key) if key in present else None

    def instant(key: str) -> int | None:
        return parse_instant(present[key], key) if key in present else None

    start_from = instant("startTime")
    if start_from == 0 and _EPOCH_MS_RE.fullmatch(present["startTime"]):
        # "startTime=0 means all" (SPEC), recordings a clock put before 1970 too.
        start_from = MIN_INSTANT_MS
    return RecordingQuery(
        caller=phone("callerPhoneNumber"),
        dialed=phone("dialedPhoneNumber"),
        start_from=start_from,
        end_before=instant("endTime"),
        user=parse_user_query(present["userName"]) if "userName" in present else None,
    )


def _checked(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidParameter(f"Invalid {key}: expected a string")
    if len(value) > MAX_PARAMETER_LENGTH:
        raise InvalidParameter(f"Invalid {key}: longer than {MAX_PARAMETER_LENGTH} characters")
    # NUL ends strings in SQLite's GLOB and C APIs; U+FFFD means the client sent bytes
    # that were not UTF-8; lone surrogates cannot be encoded for the database at all.
    if "\x00" in value or "\ufffd" in value or _has_surrogate(value):
        raise InvalidParameter(f"Invalid {key}: contains characters that are not allowed")
    return value


# chr(): mypyc (setup.py) takes no surrogate in a string literal.
_SURROGATES = (chr(0xD800), chr(0xDFFF))


def _has_surrogate(value: str) -> bool:
    low, high = _SURROGATES
    return any(low <= ch <= high for ch in value)


def matches(query: RecordingQuery, recording: Mapping[str, Any]) -> bool:
    """Reference matcher: whether a stored recording document satisfies ``query``.

    Phone numbers are compared in :func:`normalise_phone` form (a missing one is ``""``,
    which only ``*`` matches). A missing or unparseable startTime never satisfies a
    ``startTime`` criterion, nor a missing stopTime (a call still in progress) an
    ``endTime`` one. Names come from :func:`recording_names`.
    """
    if query.caller is not None and not wildcard_match(
        query.caller, _phone_of(recording, "callerPhoneNumber")
    ):
        return False
    if query.dialed is not None and not wildcard_match(
        query.dialed, _phone_of(recording, "dialedPhoneNumber")
    ):
        return False
    if query.start_from is not None:
        start = _instant_of(recording, "startTime")
        if start is None or start < query.start_from:
            return False
    if query.end_before is not None:
        stop = _instant_of(recording, "stopTime")
        if stop is None or stop > query.end_before:
            return False
    return query.user is None or user_query_matches(query.user, recording_names(recording))


def _phone_of(recording: Mapping[str, Any], key: str) -> str:
    raw = recording.get(key)
    return normalise_phone(raw) if isinstance(raw, str) else ""


def _instant_of(recording: Mapping[str, Any], key: str) -> int | None:
    raw = recording.get(key)
    # An integer is taken as epoch ms (bool is an int subclass but never an instant).
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if MIN_INSTANT_MS <= raw <= MAX_INSTANT_MS else None
    if not isinstance(raw, str):
        return None
    try:
        return parse_instant(raw, key)
    except InvalidParameter:
        return None
