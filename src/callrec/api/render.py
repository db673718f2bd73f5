"""Recordings as the APIs show them: callrec's play URLs instead of storage locations."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from callrec.store import Document

_HIDDEN = ("mediaDescriptor", "originalMediaDescriptor")


def external_view(doc: Document, play_base: str) -> Document:
    """SPEC §2 mediaUri substitution; no storage detail survives.

    ``play_base`` is ``{public base}{root}/api/v2/recordings``.
    """
    rec_id = quote(doc["id"], safe="")
    out = dict(doc)
    files = []
    for media in doc.get("mediaFiles", []):
        shown: dict[str, Any] = {k: v for k, v in media.items() if k not in _HIDDEN}
        path = f"/recordings/{rec_id}/play/{quote(str(media.get('mediaId', '')), safe='')}"
        shown["mediaUri"] = play_base.removesuffix("/recordings") + path
        shown["mediaPath"] = path
        files.append(shown)
    out["mediaFiles"] = files
    return out


def ops_view(doc: Document, play_base: str) -> Document:
    """The recording as stored, with ``originalMediaDescriptor`` and ops play URLs."""
    rec_id = quote(doc["id"], safe="")
    out = dict(doc)
    files = []
    for media in doc.get("mediaFiles", []):
        shown = dict(media)
        shown["mediaUri"] = (
            f"{play_base}/{rec_id}/play/{quote(str(media.get('mediaId', '')), safe='')}"
        )
        files.append(shown)
    out["mediaFiles"] = files
    return out


class Bodies:
    """Rendered recordings (response bodies of GET /recordings/{id}, or a search page's
    parts) by what they are made of: the recording's stored form and how it is shown (the
    play URLs' base, and the view). The same two always make the same body, so a body is
    never stale: a changed recording is stored differently, and is rendered afresh. A
    recording read again costs a dictionary lookup instead of a decompression and its JSON
    parsed and rendered again. Used from the event loop only."""

    MOST_BYTES: Final = 32 << 20
    """Bytes kept at most, bodies and stored forms (then all are forgotten, and keeping
    starts again)."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[bytes, str], bytes] = {}
        self._size = 0

    def get(self, stored: bytes, base: str) -> bytes | None:
        return self._bodies.get((stored, base))

    def keep(self, stored: bytes, base: str, body: bytes) -> None:
        size = len(stored) + len(body)
        if self._size + size > self.MOST_BYTES:
            self._bodies, self._size = {}, 0
        self._bodies[stored, base] = body
        self._size += size
