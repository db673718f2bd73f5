"""Recordings as the APIs show them: callrec's play URLs instead of storage locations."""

from __future__ import annotations

from collections.abc import Hashable
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
    """Response bodies of recent reads, each kept while the store's change token stays the
    same (``RecordingStore.change_token``: SQLite, until anything is committed; PostgreSQL,
    until a change is heard of). A body read again costs a dictionary lookup instead of a
    point read, a decompression, and the JSON parsed and rendered again.

    Used from the event loop only. A read that awaits its row while the token moves keeps
    nothing: its body belongs to a generation already over.
    """

    MOST_BYTES: Final = 32 << 20
    """Bodies kept at most, in bytes (then all are forgotten, and keeping starts again)."""

    def __init__(self) -> None:
        self._token: bytes | None = None
        self._bodies: dict[Hashable, bytes] = {}
        self._size = 0

    def get(self, token: bytes | None, key: Hashable) -> bytes | None:
        """The body kept for ``key`` under ``token`` (read just now), or None."""
        if token is None:
            return None
        if token != self._token:
            self._token, self._bodies, self._size = token, {}, 0
            return None
        return self._bodies.get(key)

    def keep(self, token: bytes | None, key: Hashable, body: bytes) -> None:
        """Keep ``body``, rendered from reads made after ``token`` was read."""
        if token is None or token != self._token:
            return
        if self._size + len(body) > self.MOST_BYTES:
            self._bodies, self._size = {}, 0
        self._bodies[key] = body
        self._size += len(body)
