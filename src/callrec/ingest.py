"""Turning what recorders post into what the store keeps, shared by the ops API and import."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson

from callrec.errors import InvalidParameter
from callrec.media.locations import Storages
from callrec.model import validate_recording
from callrec.store import Document

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 64
"""Most levels of arrays and objects a body may nest (a recording uses five). orjson reads
1,024 but writes 255, and a stored recording is sent back inside two levels more."""
# An escaped NUL: "\u0000" after an even number of backslashes (an odd one escapes the "\").
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _exact_int(text: str) -> int:
    value = int(text) if len(text) <= 20 else None
    if value is None or not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("integer out of range")
    return value


def _exact_float(text: str) -> float:
    """The double ``text`` denotes, when it is written back as the same number: neither
    rounded (16 digits do not always survive) nor out of range (``1e400``, ``1e-400``)."""
    value = float(text)
    shown = repr(value)
    if not math.isfinite(value) or (shown != text and Decimal(shown) != Decimal(text)):
        raise ValueError("number cannot be kept exactly")
    return value


def _reject(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


class _TooDeep(ValueError):
    pass


def _exact(value: Any, depth: int = 0) -> bool:
    """Whether a document as orjson decoded it holds no float and no integer beyond 64 bits.
    orjson reads integers beyond 64 bits, and decimals with more digits than a double holds,
    as floats: only an exact reading tells those from the floats it read exactly. Walks the
    whole document, whatever it finds: raises ``_TooDeep`` beyond ``MAX_DEPTH`` levels."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        number: int = value
        return _INT64_MIN <= number <= _INT64_MAX
    if kind is float:
        return False
    if depth == MAX_DEPTH:
        raise _TooDeep
    exact = True
    # Typed loops: compiled, a dict's and a list's own iteration.
    if kind is dict:
        fields: dict[str, Any] = value
        for item in fields.values():
            if type(item) is not str and not _exact(item, depth + 1):
                exact = False
    else:
        items: list[Any] = value
        for item in items:
            if type(item) is not str and not _exact(item, depth + 1):
                exact = False
    return exact


def parse_json(body: bytes) -> Any:
    """Decode a posted body (or an import line); refuses what no backend stores faithfully:
    NUL characters, integers beyond 64 bits, numbers that would lose digits."""
    try:
        data = orjson.loads(body)
        if not _exact(data):  # a number: read again exactly, or refused
            data = json.loads(
                body, parse_int=_exact_int, parse_float=_exact_float, parse_constant=_reject
            )
    except _TooDeep:
        raise InvalidParameter(
            f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep"
        ) from None
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
