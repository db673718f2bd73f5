"""Recordings as the APIs show them: callrec's play URLs instead of storage locations."""

from __future__ import annotations

from typing import Any
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
