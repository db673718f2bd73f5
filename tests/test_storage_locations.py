"""Resolving recorders' media locations to declared storages (callrec.media.locations): pure
string work, nothing is fetched; anything outside the configuration is statusCode 2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from callrec.errors import InvalidParameter
from callrec.media.config import S3Config, WebDAVConfig, build_store
from callrec.media.local import LocalMediaStore
from callrec.media.locations import Storages

CC = "cc1"


@pytest.fixture
def storages(tmp_path: Path) -> Iterator[Storages]:
    def s3(bucket: str, **fields: Any) -> Any:
        config = S3Config(
            type="s3", bucket=bucket, access_key_id="k", secret_access_key=SecretStr("s"), **fields
        )
        return build_store(bucket, config, 5)

    stores = {
        "local": LocalMediaStore(tmp_path / "media"),
        "archive": LocalMediaStore(tmp_path / "archive", name="archive"),
        "dav": build_store(
            "dav",
            WebDAVConfig(type="webdav", url="http://dav.example.internal/recordings"),
            5,
        ),
        "dav2": build_store(
            "dav2", WebDAVConfig(type="webdav", url="https://other.example:8443/dav/"), 5
        ),
        "gvp-callrecording": s3("gvp-callrecording", region="us-west-2"),
        "recs": s3("recs", endpoint_url="http://minio:9000"),
    }
    yielded = Storages(stores)
    yield yielded
    anyio.run(yielded.aclose)


def resolve(storages: Storages, **location: Any) -> dict[str, Any]:
    media = storages.resolve({"mediaId": "a.mp3", **location}, CC)
    assert media["mediaId"] == "a.mp3"
    resolved: dict[str, Any] = media["mediaDescriptor"]
    return resolved


def webdav(path: Any) -> dict[str, Any]:
    return {"mediaDescriptor": {"storage": "webDAV", "path": path}}


def s3(path: Any, data: Any) -> dict[str, Any]:
    return {"mediaDescriptor": {"storage": "awsS3", "path": path, "data": data}}


@pytest.mark.parametrize(
    ("location", "storage", "key"),
    [
        (webdav("http://dav.example.internal/recordings/voice/4f.mp3"), "dav", "voice/4f.mp3"),
        (webdav("http://DAV.Example.Internal:80/recordings/a%20b/c.mp3"), "dav", "a b/c.mp3"),
        (webdav("/recordings/voice/x.mp3"), "dav", "voice/x.mp3"),
        (webdav("https://other.example:8443/dav/2024/x.wav"), "dav2", "2024/x.wav"),
        (webdav("/dav/Grüße.wav"), "dav2", "Grüße.wav"),
        (
            s3("18bae11b/01I6E87G.mp3", {"bucket": "gvp-callrecording"}),
            "gvp-callrecording",
            "18bae11b/01I6E87G.mp3",
        ),
        (s3("x/y.mp3", {"bucket": "recs", "region": "us-east-1"}), "recs", "x/y.mp3"),
        ({"mediaUri": "http://dav.example.internal/recordings/voice/1.mp3"}, "dav", "voice/1.mp3"),
        ({"mediaUri": "s3://recs/cc1/a.mp3"}, "recs", "cc1/a.mp3"),
        ({"mediaUri": "http://recs.minio:9000/cc1/a.mp3"}, "recs", "cc1/a.mp3"),  # either style
        ({"mediaUri": "http://minio:9000/recs/cc1/a%2Bb.mp3"}, "recs", "cc1/a+b.mp3"),
        (
            {"mediaUri": "https://gvp-callrecording.s3.us-west-2.amazonaws.com/k/a.mp3"},
            "gvp-callrecording",
            "k/a.mp3",
        ),
        ({"mediaDescriptor": {"storage": "local", "path": "cc1/x/a.mp3"}}, "local", "cc1/x/a.mp3"),
        # As callrec stores (and exports) them: by storage name.
        ({"mediaDescriptor": {"storage": "recs", "path": "cc1/r/a.mp3"}}, "recs", "cc1/r/a.mp3"),
        ({"mediaDescriptor": {"storage": "dav", "path": "voice/a.mp3"}}, "dav", "voice/a.mp3"),
        ({"mediaDescriptor": {"storage": "archive", "path": "cc1/a.mp3"}}, "archive", "cc1/a.mp3"),
    ],
)
def test_locations_inside_declared_storages_resolve(
    storages: Storages, location: dict[str, Any], storage: str, key: str
) -> None:
    assert resolve(storages, **location) == {"storage": storage, "path": key}


def test_the_original_location_is_kept_aside(storages: Storages) -> None:
    uri = "http://dav.example.internal/recordings/voice/1.mp3"
    media = storages.resolve({"mediaId": "a.mp3", "mediaUri": uri}, CC)
    assert media["originalMediaDescriptor"] == {"mediaUri": uri}
    assert "mediaUri" not in media
    descriptor = {"storage": "awsS3", "path": "k", "data": {"bucket": "recs"}}
    media = storages.resolve({"mediaId": "a.mp3", "mediaDescriptor": descriptor}, CC)
    assert media["originalMediaDescriptor"] == descriptor


@pytest.mark.parametrize(
    "location",
    [
        webdav("http://dav.example.internal:8080/recordings/x.mp3"),  # another port
        webdav("https://dav.example.internal/recordings/x.mp3"),  # another scheme
        webdav("http://evil.example/recordings/x.mp3"),  # another host
        webdav("http://dav.example.internal/recordingsX/x.mp3"),
        webdav("http://dav.example.internal/recordings"),
        webdav("http://dav.example.internal/recordings/"),
        webdav("http://dav.example.internal/recordings/../etc/passwd"),
        webdav("http://dav.example.internal/recordings/%2e%2e/etc/passwd"),
        webdav("http://dav.example.internal/recordings/a//b.mp3"),
        webdav("http://dav.example.internal/recordings/x.mp3?download=1"),
        webdav("http://dav.example.internal/recordings/x.mp3#t=1"),
        webdav("http://dav.example.internal:notaport/recordings/x.mp3"),
        webdav("http://[::1/recordings/x.mp3"),  # not a URL at all
        webdav("http://dav.example.internal]/recordings/x.mp3"),
        webdav("//dav.example.internal/recordings/x.mp3"),
        webdav("voice/1.mp3"),
        webdav("/elsewhere/x.mp3"),
        webdav("/recordings/a%00b.mp3"),
        webdav(["http://dav.example.internal/recordings/x.mp3"]),
        webdav("s3://recs/a.mp3"),  # a webDAV descriptor is never an S3 object
        s3("x.mp3", {"bucket": "unknown-bucket"}),
        s3("x.mp3", {}),
        s3("x.mp3", "recs"),
        s3("../x.mp3", {"bucket": "recs"}),
        s3("/x.mp3", {"bucket": "recs"}),
        {"mediaDescriptor": {"storage": "awsS3", "path": "x.mp3"}},
        {"mediaDescriptor": {"storage": "ftp", "path": "x.mp3"}},
        {"mediaDescriptor": {"storage": "recs", "path": "../x.mp3"}},
        {"mediaDescriptor": {"storage": "archive", "path": "cc2/a.mp3"}},  # another tenant's
        {"mediaUri": "http://169.254.169.254/latest/meta-data/"},
        {"mediaUri": "file:///etc/passwd"},
        {"mediaUri": "s3://other-bucket/a.mp3"},
        {"mediaUri": "s3://recs/"},
        {"mediaUri": "s3://[recs/a.mp3"},
        {"mediaUri": "http://[::1/x.mp3"},
        {"mediaUri": "http://minio:9000/other/a.mp3"},
        {"mediaUri": "https://minio:9000/recs/a.mp3"},
        {"mediaUri": "/recordings/x.mp3"},  # a bare path is no URL
        {"mediaUri": 42},
    ],
)
def test_locations_outside_declared_storages_are_refused(
    storages: Storages, location: dict[str, Any]
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        resolve(storages, **location)
    assert caught.value.status_code == 2
    for leak in ("dav.example", "169.254", "minio", "evil", "passwd"):
        assert leak not in caught.value.message


def test_a_virtual_host_bucket_url_resolves_when_so_configured(tmp_path: Path) -> None:
    config = S3Config(
        type="s3",
        bucket="recs",
        endpoint_url="http://minio:9000",
        addressing_style="virtual",
        access_key_id="k",
        secret_access_key=SecretStr("s"),
    )
    storages = Storages({"recs": build_store("recs", config, 5)})
    try:
        assert resolve(storages, mediaUri="http://recs.minio:9000/a/b.mp3") == {
            "storage": "recs",
            "path": "a/b.mp3",
        }
    finally:
        anyio.run(storages.aclose)


def test_local_paths_stay_in_their_tenant(storages: Storages) -> None:
    with pytest.raises(InvalidParameter):
        resolve(storages, mediaDescriptor={"storage": "local", "path": "cc2/a.mp3"})


@pytest.mark.parametrize(
    ("descriptor", "owned"),
    [
        ({"storage": "local", "path": "cc1/rec-1/a.mp3"}, True),
        ({"storage": "recs", "path": "cc1/rec-1/a.mp3"}, True),
        ({"storage": "local", "path": "cc1/rec-10/a.mp3"}, False),
        ({"storage": "local", "path": "cc1/imports/a.mp3"}, False),
        ({"storage": "dav", "path": "voice/a.mp3"}, False),
        ({"storage": "gone", "path": "cc1/rec-1/a.mp3"}, False),
        ({"storage": "local"}, False),
    ],
)
def test_callrec_owns_only_its_own_upload_keys(
    storages: Storages, descriptor: dict[str, str], owned: bool
) -> None:
    assert storages.owns(descriptor, "cc1", "rec-1") is owned


def test_a_storage_that_is_not_configured_is_unavailable(storages: Storages) -> None:
    from callrec.errors import StorageUnavailable

    with pytest.raises(StorageUnavailable) as caught:
        storages.get("removed-from-config")
    assert caught.value.http_status == 502
