"""A WebDAV server (Apache mod_dav, nginx dav, wsgidav, ...) under one base URL, with Basic
authentication; what Genesys recorders PUT their files to."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree

import anyio
import httpx

from callrec.errors import StorageUnavailable
from callrec.media import MediaMissing, MediaStat, StorageKind, key_parts
from callrec.media.remote import HttpBody, HttpStorage, spooled, stat_from_headers

_PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<propfind xmlns="DAV:"><prop><resourcetype/><getcontentlength/></prop></propfind>'
)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class WebDAVStore(HttpStorage):
    """Files under ``base_url`` (which ends in ``/``); keys are paths relative to it."""

    kind: StorageKind = "webdav"

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient, timeout: float) -> None:
        super().__init__(name, client, timeout)
        self.base_url = base_url
        base = urlsplit(base_url)
        self._origin = (
            base.scheme,
            (base.hostname or "").lower(),
            base.port or _default_port(base.scheme),
        )
        self._base_path = unquote(base.path)

    def _file_url(self, key: str) -> str:
        return self.base_url + _quote(key)

    async def stat(self, key: str) -> MediaStat:
        key_parts(key)
        request = self.client.build_request("HEAD", self._file_url(key))
        return stat_from_headers(await self.simple(request, "HEAD", (200,)))

    async def open_range(
        self, key: str, start: int, end: int, expected: MediaStat | None = None
    ) -> HttpBody:
        key_parts(key)
        request = self.client.build_request(
            "GET", self._file_url(key), headers={"Range": f"bytes={start}-{end}"}
        )
        return await self.open_body(request, "GET", start, end, expected)

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Sent under a name of its own beside the file, then moved over it: a server may
        write a PUT in place (wsgidav does), and an upload cut short would otherwise leave
        half a file where the last complete one was. Except a name with ``;`` or ``?``,
        which some servers (wsgidav) cut a MOVE's destination at: put in place."""
        parts = key_parts(key)
        spare = "/".join([*parts[:-1], f".callrec-upload-{uuid.uuid4().hex}"])
        async with spooled(chunks, max_bytes) as spool:
            if ";" in key or "?" in key:
                await self._put(key, spool.size, spool.content(), parts[:-1])
                return spool.size
            try:
                await self._put(spare, spool.size, spool.content(), parts[:-1])
                move = self.client.build_request(
                    "MOVE",
                    self._file_url(spare),
                    headers={"Destination": self._file_url(key), "Overwrite": "T"},
                )
                await self.simple(move, "MOVE", (201, 204))
            except BaseException:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self.delete(spare)
                raise
            return spool.size

    async def _put(
        self,
        key: str,
        size: int,
        content: Callable[[], AsyncIterator[bytes]],
        collections: list[str],
    ) -> None:
        for attempt in range(2):
            request = self.client.build_request(
                "PUT", self._file_url(key), headers={"Content-Length": str(size)}, content=content()
            )
            response = await self.send(request, "PUT", deadline=False)
            if response.status_code != 409 or attempt:  # 409: a parent collection is missing
                await self.check(response, "PUT", (200, 201, 204))
                await response.aclose()
                return
            await response.aclose()
            await self._make_collections(collections)

    async def _make_collections(self, parts: list[str]) -> None:
        for depth in range(1, len(parts) + 1):
            url = self._file_url("/".join(parts[:depth])) + "/"
            # 405: it exists already.
            await self.simple(self.client.build_request("MKCOL", url), "MKCOL", (201, 405))

    async def delete(self, key: str) -> None:
        key_parts(key)
        request = self.client.build_request("DELETE", self._file_url(key))
        await self.simple(request, "DELETE", (200, 204, 404))

    async def list_files(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        pending = [prefix]
        while pending:
            collection = pending.pop()
            try:
                entries = await self._propfind(collection)
            except MediaMissing:
                continue
            for key, size in sorted(entries):
                if size is None:
                    pending.append(key + "/")
                else:
                    yield key, size

    async def _propfind(self, collection: str) -> list[tuple[str, int | None]]:
        """The members of a collection: (key, size), size None for collections."""
        request = self.client.build_request(
            "PROPFIND",
            self.base_url + _quote(collection),
            headers={"Depth": "1", "Content-Type": "application/xml"},
            content=_PROPFIND,
        )
        response = await self.simple(request, "PROPFIND", (207,))
        try:
            # The operator's own storage; expat resolves no external entities.
            root = ElementTree.fromstring(response.content)  # noqa: S314
        except ElementTree.ParseError:
            raise StorageUnavailable() from None
        members: list[tuple[str, int | None]] = []
        for item in root.iter("{DAV:}response"):
            key = self._key_of_path(unquote(urlsplit(item.findtext("{DAV:}href", "")).path))
            if key is None or key.rstrip("/") == collection.rstrip("/"):
                continue  # the collection itself
            if item.find(".//{DAV:}collection") is not None:
                members.append((key.rstrip("/"), None))
            else:
                length = item.findtext(".//{DAV:}getcontentlength") or "0"
                members.append((key, int(length)))
        return members

    def _key_of_path(self, path: str) -> str | None:
        return path[len(self._base_path) :] if path.startswith(self._base_path) else None

    def claim_url(self, location: str) -> str | None:
        """A URL under the base URL, or an absolute path under the base URL's path."""
        if location.startswith("/") and not location.startswith("//"):
            return (
                None if "?" in location or "#" in location else self._key_of_path(unquote(location))
            )
        try:
            url = urlsplit(location)
        except ValueError:  # not a URL at all ("http://[x/y")
            return None
        if url.scheme not in ("http", "https") or url.query or url.fragment:
            return None
        if "@" in url.netloc:  # credentials in the URL would be kept and shown by the ops API
            return None
        try:
            origin = (
                url.scheme,
                (url.hostname or "").lower(),
                url.port or _default_port(url.scheme),
            )
        except ValueError:  # a port that is not a number
            return None
        return self._key_of_path(unquote(url.path)) if origin == self._origin else None

    def claim_object(self, bucket: str, key: str) -> str | None:
        return None


def _quote(key: str) -> str:
    return quote(key, safe="/~")
