"""Which configured storage a media file lives in, decided at ingest; which files callrec owns.

The service never fetches a URL it was merely handed: a location that does not point into a
configured storage is refused (statusCode 2), and on output only callrec's own play URL shows.
Resolved locations are stored as ``{"storage": <configured storage name>, "path": <key>}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from callrec.errors import InvalidParameter, StorageUnavailable
from callrec.media import MediaStore, key_parts

NOT_CONFIGURED = "mediaDescriptor does not point into a configured media storage"


class Storages:
    """The named media stores of this deployment, and where uploads go."""

    def __init__(self, stores: Mapping[str, MediaStore], upload_store: str = "local") -> None:
        self.stores = dict(stores)
        self.upload_store = upload_store

    def get(self, name: str) -> MediaStore:
        try:
            return self.stores[name]
        except KeyError:
            # A recording whose storage was removed from the configuration: its bytes are
            # out of reach, like those of a storage that is down.
            raise StorageUnavailable("Media storage is not configured") from None

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
            out["mediaDescriptor"] = self._from_url(uri)
        return out

    def _from_descriptor(self, descriptor: Mapping[str, Any], ccid: str) -> dict[str, str]:
        storage, path = descriptor.get("storage"), descriptor.get("path")
        if not isinstance(path, str):
            raise InvalidParameter(NOT_CONFIGURED)
        if storage == "local" and "local" in self.stores:
            if key_parts(path)[0] != ccid:
                raise InvalidParameter("local media paths must start with the contact center id")
            return {"storage": "local", "path": path}
        if storage == "webDAV":
            return self._claim("webdav", lambda store: store.claim_url(path))
        if storage == "awsS3":
            data = descriptor.get("data")
            bucket = data.get("bucket") if isinstance(data, Mapping) else None
            if isinstance(bucket, str):
                return self._claim("s3", lambda store: store.claim_object(bucket, path))
        if isinstance(storage, str) and storage in self.stores:
            # A location as callrec stores it (and `callrec export` writes it), by the name
            # of a declared storage: what callrec uploaded to WebDAV or S3 re-imports.
            parts = key_parts(path)
            if self.stores[storage].kind == "local" and parts[0] != ccid:
                raise InvalidParameter("local media paths must start with the contact center id")
            return {"storage": storage, "path": path}
        raise InvalidParameter(NOT_CONFIGURED)

    def _from_url(self, uri: Any) -> dict[str, str]:
        if not isinstance(uri, str):
            raise InvalidParameter("mediaUri must be a string")
        if "://" not in uri:  # a URL, not a path on some server
            raise InvalidParameter("mediaUri does not point into a configured media storage")
        for kind in ("webdav", "s3"):
            try:
                return self._claim(kind, lambda store: store.claim_url(uri))
            except InvalidParameter:
                continue
        raise InvalidParameter("mediaUri does not point into a configured media storage")

    def _claim(self, kind: str, claim: Callable[[MediaStore], str | None]) -> dict[str, str]:
        for name, store in self.stores.items():
            if store.kind != kind:
                continue
            key = claim(store)
            if key is not None:
                key_parts(key)  # no traversal, no empty segments, no control characters
                return {"storage": name, "path": key}
        raise InvalidParameter(NOT_CONFIGURED)

    def owns(self, descriptor: Mapping[str, Any], ccid: str, recording_id: str) -> bool:
        """Whether callrec's own upload put this file there: uploads, in whichever storage
        receives them, live under ``{ccid}/{recording id}/``, a namespace callrec keeps
        for itself."""
        path = descriptor.get("path")
        return (
            descriptor.get("storage") in self.stores
            and isinstance(path, str)
            and path.startswith(f"{ccid}/{recording_id}/")
        )

    async def aclose(self) -> None:
        """Close every store's connections (also when one of them fails to close)."""
        errors = []
        for store in self.stores.values():
            try:
                await store.aclose()
            except Exception as error:  # pragma: no cover - closing a pool does not fail
                errors.append(error)
        if errors:
            raise errors[0]
