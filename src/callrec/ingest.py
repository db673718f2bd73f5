"""Turning what recorders post into what the store keeps, shared by the ops API and import."""

from __future__ import annotations

from typing import Any

from callrec.media.locations import Storages
from callrec.model import validate_recording
from callrec.store import Document


def prepare(storages: Storages, raw: Any, ccid: str) -> Document:
    """Validate one posted recording and resolve its media locations to configured storages.

    Raises ``MissingParameter`` / ``InvalidParameter`` with a message naming the field.
    """
    doc = validate_recording(raw, ccid)
    doc["mediaFiles"] = [storages.resolve(m) for m in doc["mediaFiles"]]
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
