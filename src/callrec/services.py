"""Everything a running callrec needs, opened from settings in one place (app and CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from callrec.auth import Authenticator, CsrfGuard
from callrec.media.local import LocalMediaStore
from callrec.media.locations import Storages
from callrec.settings import Settings
from callrec.store import RecordingStore, open_store


@dataclass
class Services:
    settings: Settings
    store: RecordingStore
    storages: Storages
    auth: Authenticator
    csrf: CsrfGuard

    @classmethod
    def open(cls, settings: Settings) -> Services:
        store = open_store(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            timeout=settings.database_timeout,
        )
        try:
            media = LocalMediaStore(settings.resolved_media_dir)
            secret = settings.csrf_secret
            csrf_key = secret.get_secret_value().encode() if secret else store.secret("csrf")
            return cls(
                settings=settings,
                store=store,
                storages=Storages({"local": media}),
                auth=Authenticator(store, settings.auth_cache_seconds, store.secret("auth-cache")),
                csrf=CsrfGuard(csrf_key),
            )
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()
