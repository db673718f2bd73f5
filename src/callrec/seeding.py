"""``callrec serve --demo``: a demo contact center with playable recordings and an admin."""

from __future__ import annotations

import os
from dataclasses import dataclass

from callrec.auth import hash_password
from callrec.demo import DEMO_CCID, demo_audio, demo_recordings
from callrec.ingest import prepare
from callrec.media.local import LocalMediaStore
from callrec.services import Services
from callrec.store import User

DEMO_USER = "demo-admin"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed to the operator; demo data only
DEMO_COUNT = 200
CLIP_SECONDS = 8.0


@dataclass(frozen=True)
class DemoLogin:
    user: str
    password: str
    ccid: str


def seed_demo(services: Services, count: int = DEMO_COUNT) -> DemoLogin:
    """Create (or refresh: re-running merges) the demo contact center and its admin."""
    media_store = services.storages.get("local")
    assert isinstance(media_store, LocalMediaStore)
    docs = []
    for i, raw in enumerate(demo_recordings(count, ccid=DEMO_CCID)):
        for media in raw["mediaFiles"]:
            key = f"{DEMO_CCID}/{raw['id']}/{media['mediaId']}"
            path = media_store.path(key)
            if not path.exists():
                seconds = min(CLIP_SECONDS, int(media.get("duration", "8000")) / 1000)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(demo_audio(seconds, seed=i))
            media["size"] = str(os.path.getsize(path))
            media["mediaDescriptor"] = {"storage": "local", "path": key}
        docs.append(prepare(services.storages, raw, DEMO_CCID))
    for start in range(0, len(docs), 500):
        services.store.upsert(DEMO_CCID, docs[start : start + 500])
    if services.store.get_user(DEMO_USER) is None:
        services.store.put_user(
            User(DEMO_USER, hash_password(DEMO_PASSWORD), "admin", DEMO_CCID, "Demo", "Admin")
        )
    return DemoLogin(DEMO_USER, DEMO_PASSWORD, DEMO_CCID)
