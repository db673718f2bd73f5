"""HTTP semantics of playing a media file: ranges, content types, validators.

Pure functions; ``callrec.api.play`` puts them on the wire.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from callrec.errors import GWSError

_RANGE = re.compile(r"bytes=(\d{0,64})-(\d{0,64})")
# Positions are capped here: beyond any file, and far from int() and backend limits.
_FAR = 2**62
_MIME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")
_ALIASES = {
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-mpeg": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
}
_BY_EXTENSION = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".mp4": "video/mp4",
}


class RangeNotSatisfiable(GWSError):
    status_code, http_status, default_message = 2, 416, "Requested range not satisfiable"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range asked for, inclusive, or None to send the whole file.

    Malformed headers and multi-range requests are ignored (RFC 9110 lets a server send the
    whole representation instead); a range starting past the end is unsatisfiable.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        suffix = min(int(last), _FAR)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size - 1
    start = min(int(first), _FAR)
    end = min(int(last), _FAR) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    return start, min(end, size - 1)


def content_type(media: Mapping[str, Any]) -> str:
    """SPEC §4 mapping; encrypted media is served as stored, as opaque bytes.

    Only audio and video types are served as such: a file declared ``text/html`` or
    ``image/svg+xml`` would otherwise run as a page on callrec's own origin.
    """
    if media.get("pkcs7"):
        return "application/octet-stream"
    declared = str(media.get("type") or "").strip().lower()
    if not _MIME.fullmatch(declared):
        name = str(media.get("mediaId", ""))
        ext = name[name.rfind(".") :].lower() if "." in name else ""
        declared = _BY_EXTENSION.get(ext) or mimetypes.guess_type(name)[0] or ""
    declared = _ALIASES.get(declared, declared)
    if declared.startswith(("audio/", "video/")):
        return declared
    return "application/octet-stream"


def content_disposition(filename: str) -> str:
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def if_range_allows(header: str | None, etag: str) -> bool:
    """A Range applies unless an If-Range names another version of the file."""
    return header is None or header.strip() == etag


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or etag in [
        t.strip().removeprefix("W/") for t in header.split(",")
    ]
