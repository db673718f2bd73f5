"""``callrec media check``: the real command on a local directory, a WebDAV server (wsgidav)
and a storage that is down; missing, resized, unreachable and orphaned files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callrec.ingest import prepare
from callrec.services import Services
from callrec.settings import Settings
from conftest import local_recording
from server import run_cli
from storage_servers import PASSWORD, USER, WebDAV, closed_port, webdav_server


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAV]:
    with webdav_server(tmp_path_factory.mktemp("dav")) as server:
        yield server


def media(media_id: str, storage: str, path: str, size: int | None = None) -> dict[str, Any]:
    file: dict[str, Any] = {
        "mediaId": media_id,
        "mediaDescriptor": {"storage": storage, "path": path},
    }
    if size is not None:
        file["size"] = str(size)
    return file


@pytest.fixture
def data(tmp_path: Path, dav: WebDAV) -> tuple[Path, dict[str, str]]:
    """A data directory whose recordings point at good, missing and resized files."""
    config = tmp_path / "storage.toml"
    config.write_text(
        f'[storages.dav]\ntype = "webdav"\nurl = "{dav.url}"\nusername = "{USER}"\n'
        f'password = "{PASSWORD}"\n\n'
        f'[storages.down]\ntype = "webdav"\nurl = "http://127.0.0.1:{closed_port()}/x/"\n'
    )
    config.chmod(0o600)
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, storage_config=config, storage_timeout=2)
    local = settings.resolved_media_dir
    for path, content in {
        "cc1/rec-a/a.wav": b"12345",
        "cc1/rec-b/b.wav": b"12345",
        "cc1/stray.wav": b"nobody's",
        "cc2/rec-f/f.wav": b"123",
        "cc2/old/left-over.wav": b"x",
    }.items():
        (local / path).parent.mkdir(parents=True, exist_ok=True)
        (local / path).write_bytes(content)
    tag = tmp_path.name  # the WebDAV share is shared by the module's tests
    for path, content in {f"{tag}/d.wav": b"dav!", f"{tag}/stray.wav": b"?"}.items():
        (dav.root / path).parent.mkdir(parents=True, exist_ok=True)
        (dav.root / path).write_bytes(content)
    recordings = {
        "cc1": [
            local_recording("rec-a", mediaFiles=[media("a.wav", "local", "cc1/rec-a/a.wav", 5)]),
            local_recording("rec-b", mediaFiles=[media("b.wav", "local", "cc1/rec-b/b.wav", 999)]),
            local_recording("rec-c", mediaFiles=[media("c.wav", "local", "cc1/rec-c/c.wav")]),
            local_recording(
                "rec-d",
                mediaFiles=[
                    media("d.wav", "webDAV", f"{dav.url}{tag}/d.wav", 4),
                    {"mediaId": "declared-only.wav"},
                ],
            ),
            local_recording(
                "rec-e", mediaFiles=[media("e.wav", "webDAV", f"{dav.url}{tag}/e.wav")]
            ),
        ],
        "cc2": [
            local_recording("rec-f", mediaFiles=[media("f.wav", "local", "cc2/rec-f/f.wav", 3)]),
            local_recording(
                "rec-g", mediaFiles=[{"mediaId": "g.wav", "mediaUri": f"{down_url(config)}g.wav"}]
            ),
        ],
    }
    services = Services.open(settings)
    try:
        for ccid, docs in recordings.items():
            services.store.upsert(ccid, [prepare(services.storages, d, ccid) for d in docs])
    finally:
        services.close()
    return data_dir, {"CALLREC_STORAGE_CONFIG": str(config), "CALLREC_STORAGE_TIMEOUT": "2"}


def down_url(config: Path) -> str:
    return config.read_text().split('url = "')[2].split('"')[0]


def lines(stdout: str) -> set[tuple[str, ...]]:
    return {tuple(line.split("\t")) for line in stdout.splitlines()}


def test_check_reports_every_problem(data: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    data_dir, env = data
    done = run_cli(data_dir, "media", "check", env=env)
    assert done.returncode == 1, done.stderr
    tag = tmp_path.name
    found = lines(done.stdout)
    assert (
        "size",
        "local",
        "cc1/rec-b/b.wav",
        "cc1",
        "rec-b",
        "b.wav",
        "recorded 999, found 5",
    ) in found
    assert ("missing", "local", "cc1/rec-c/c.wav", "cc1", "rec-c", "c.wav", "") in found
    assert ("missing", "dav", f"{tag}/e.wav", "cc1", "rec-e", "e.wav", "") in found
    assert ("orphan", "local", "cc1/stray.wav", "8 bytes") in found
    assert ("orphan", "local", "cc2/old/left-over.wav", "1 bytes") in found
    assert ("orphan", "dav", f"{tag}/stray.wav", "1 bytes") in found
    unreachable = {line[:3] for line in found if line[0] == "unreachable"}
    assert ("unreachable", "down", "g.wav") in unreachable  # its file
    assert ("unlisted", "down", "", "Media storage unavailable") in found  # its listing
    # Files that are fine are not mentioned.
    assert not [
        line for line in found if any(p in line for p in ("cc1/rec-a/a.wav", f"{tag}/d.wav"))
    ]
    assert "checked 7 media files: 2 missing, 1 of another size, 1 unreachable" in done.stderr
    assert "3 orphaned files among 7 stored; 1 storages not listed" in done.stderr
    assert "checking media files" in done.stderr  # the progress display


def test_check_one_contact_center(data: tuple[Path, dict[str, str]]) -> None:
    data_dir, env = data
    done = run_cli(data_dir, "media", "check", "--contact-center", "cc2", env=env)
    assert done.returncode == 1, done.stderr  # rec-g's storage is down
    found = lines(done.stdout)
    assert {line[:3] for line in found} == {
        ("unreachable", "down", "g.wav"),
        ("unlisted", "down", "cc2/"),
        ("orphan", "local", "cc2/old/left-over.wav"),
    }
    assert "checked 2 media files" in done.stderr


def test_a_clean_store_passes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "media" / "cc1" / "r").mkdir(parents=True)
    (data_dir / "media" / "cc1" / "r" / "a.wav").write_bytes(b"abc")
    services = Services.open(Settings(data_dir=data_dir))
    try:
        doc = local_recording("r", mediaFiles=[media("a.wav", "local", "cc1/r/a.wav", 3)])
        services.store.upsert("cc1", [prepare(services.storages, doc, "cc1")])
    finally:
        services.close()
    done = run_cli(data_dir, "media", "check")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "checked 1 media files: 0 missing, 0 of another size, 0 unreachable; " in done.stderr
    assert "0 orphaned files among 1 stored\n" in done.stderr


def test_usage_errors(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "data", "media", "check", "--contact-center", "../x")
    assert done.returncode == 2
    config = tmp_path / "bad.toml"
    config.write_text('[storages.x]\ntype = "webdav"\n')
    done = run_cli(tmp_path / "data", "media", "check", env={"CALLREC_STORAGE_CONFIG": str(config)})
    assert done.returncode == 2
    assert "invalid storage configuration" in done.stderr
    assert "storages.x.url" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
