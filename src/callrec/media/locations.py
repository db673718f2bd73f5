"""Which configured storage a media file lives in, decided at ingest.

The service never fetches a URL it was merely handed: a location that does not point into a
configured storage is refused (statusCode 2), and on output only callrec's own play URL shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callrec.errors import InvalidParameter
from callrec.media import MediaStore, key_parts


class Storages:
    """The named media stores of this deployment, and where uploads go."""

    def __init__(self, stores: Mapping[str, MediaStore], upload_store: str = "local") -> None:
        self.stores = dict(stores)
        self.upload_store = upload_store

    def get(self, name: str) -> MediaStore:
        try:
            return self.stores[name]
        except KeyError:
            raise InvalidParameter("media storage is not configured") from None

    def uploads(self) -> MediaStore:
        return self.get(self.upload_store)

    def resolve(self, media: Mapping[str, Any], ccid: str) -> dict[str, Any]:
        """The media file as stored: ``mediaDescriptor`` resolved, the original kept aside.

        Local paths must lie under the contact center's own directory: a recording never
        points at another tenant's file.
        """
        out = dict(media)
        descriptor = out.get("mediaDescriptor")
        uri = out.pop("mediaUri", None)
        if descriptor is not None:
            out["originalMediaDescriptor"] = descriptor
            out["mediaDescriptor"] = self._from_descriptor(descriptor, ccid)
        elif uri is not None:
            out["originalMediaDescriptor"] = {"mediaUri": uri}
            # Legacy URLs are only accepted once a configured remote storage claims them.
            raise InvalidParameter("mediaUri does not point into a configured media storage")
        return out

    def _from_descriptor(self, descriptor: Mapping[str, Any], ccid: str) -> dict[str, Any]:
        storage = descriptor.get("storage")
        path = descriptor.get("path")
        if storage != "local" or "local" not in self.stores or not isinstance(path, str):
            raise InvalidParameter("mediaDescriptor does not point into a configured media storage")
        if key_parts(path)[0] != ccid:
            raise InvalidParameter("local media paths must start with the contact center id")
        return {"storage": "local", "path": path}
