"""Turning what recorders post into what the store keeps, shared by the ops API and import."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from callrec.errors import InvalidParameter
from callrec.media.locations import Storages
from callrec.model import validate_recording
from callrec.store import Document

# orjson turns integers beyond 64 bits, and decimals with more digits than a double holds,
# into lossy floats; all of them have a run of 17 or more digits. (Huge exponents it refuses.)
# (A table that turns every digit into "0", then a substring search: far cheaper than a
# regular expression trying a run at every digit.)
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_BIG_NUMBER = b"0" * 17
_INT64 = range(-(2**63), 2**63)
# An escaped NUL: "\u0000" after an even number of backslashes (an odd one escapes the "\").
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _exact_int(text: str) -> int:
    if len(text) > 20 or int(text) not in _INT64:
        raise ValueError("integer out of range")
    return int(text)


def _exact_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or (len(text) > 17 and repr(value) != text):
        raise ValueError("number cannot be kept exactly")
    return value


def _reject(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def parse_json(body: bytes) -> Any:
    """Decode a posted body (or an import line); refuses what no backend stores faithfully:
    NUL characters, integers beyond 64 bits, numbers that would lose digits."""
    try:
        if _BIG_NUMBER in body.translate(_DIGITS_AS_ZERO):
            data = json.loads(
                body, parse_int=_exact_int, parse_float=_exact_float, parse_constant=_reject
            )
            orjson.dumps(data)  # lone surrogates, which orjson would have refused
        else:
            data = orjson.loads(body)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError is a ValueError
        raise InvalidParameter(
            "The request body is not valid JSON, or holds a number that cannot be kept exactly"
        ) from None
    if b"\\u0000" in body and _NUL.search(body):
        raise InvalidParameter("NUL characters are not allowed")
    return data


def prepare(storages: Storages, raw: Any, ccid: str) -> Document:
    """Validate one posted recording and resolve its media locations to configured storages.

    Raises ``MissingParameter`` / ``InvalidParameter`` with a message naming the field.
    """
    doc = validate_recording(raw, ccid)
    doc["mediaFiles"] = [storages.resolve(m, ccid) for m in doc["mediaFiles"]]
    return doc


def as_posted(doc: Document) -> Document:
    """The stored recording back in the ops-create format, so that an export re-imports."""
    out = dict(doc)
    files = []
    for media in doc.get("mediaFiles", []):
        media = dict(media)
        original = media.pop("originalMediaDescriptor", None)
        if isinstance(original, dict) and "mediaUri" in original:
            media.pop("mediaDescriptor", None)
            media["mediaUri"] = original["mediaUri"]
        elif original is not None:
            media["mediaDescriptor"] = original
        files.append(media)
    out["mediaFiles"] = files
    return out
