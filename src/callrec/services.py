"""Everything a running callrec needs, opened from settings in one place (app and CLI)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from callrec.api.render import Bodies
from callrec.auth import Authenticator, CsrfGuard
from callrec.media import MediaStore
from callrec.media.config import StorageConfigError, build_store, read_config
from callrec.media.local import LocalMediaStore
from callrec.media.locations import Storages
from callrec.settings import Settings
from callrec.store import RecordingStore, open_store


def open_storages(settings: Settings) -> Storages:
    """The local media directory plus the storages of ``CALLREC_STORAGE_CONFIG``.

    Raises ``StorageConfigError``. Nothing connects yet: HTTP storages connect on first use.
    """
    stores: dict[str, MediaStore] = {
        "local": LocalMediaStore(settings.resolved_media_dir, timeout=settings.storage_timeout)
    }
    if settings.storage_config is not None:
        config = read_config(settings.storage_config)
        for name, storage in config.storages.items():
            stores[name] = build_store(name, storage, settings.storage_timeout)
    if settings.upload_storage not in stores:
        raise StorageConfigError(
            f"CALLREC_UPLOAD_STORAGE names {settings.upload_storage!r}, which is not a "
            "configured storage"
        )
    return Storages(stores, settings.upload_storage)


@dataclass
class Services:
    settings: Settings
    store: RecordingStore
    storages: Storages
    auth: Authenticator
    csrf: CsrfGuard
    bodies: Bodies = field(default_factory=Bodies)  # of GET /recordings/{id}
    views: Bodies = field(default_factory=Bodies)  # recordings as pages of a search show them
    _closing: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        storages = open_storages(settings)  # a configuration error before the database opens
        store = open_store(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
        )
        try:
            secret = settings.csrf_secret
            csrf_key = secret.get_secret_value().encode() if secret else store.secret("csrf")
            return cls(
                settings=settings,
                store=store,
                storages=storages,
                auth=Authenticator(store, settings.auth_cache_seconds, store.secret("auth-cache")),
                csrf=CsrfGuard(csrf_key),
            )
        except BaseException:
            store.close()
            raise

    async def aclose(self) -> None:
        """Close the storages' connection pools (on the event loop that used them), then the
        database. What the application's lifespan should call on shutdown."""
        try:
            await self.storages.aclose()
        finally:
            self.store.close()

    def close(self) -> None:
        """Close from synchronous code. Outside an event loop (CLI commands) the storages'
        pools are closed here; inside one (a lifespan that cannot await) their closing is
        only scheduled, so prefer ``aclose`` there."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.storages.aclose())
        else:
            self._closing = loop.create_task(self.storages.aclose())
        self.store.close()
