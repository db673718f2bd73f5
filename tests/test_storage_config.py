"""The storage configuration file (callrec.media.config) and building the storages from
settings (callrec.services.open_storages): the documented examples, every error, secrets."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from callrec.media import MediaStore
from callrec.media.config import StorageConfigError, read_config
from callrec.media.local import LocalMediaStore
from callrec.media.s3 import S3Store
from callrec.media.webdav import WebDAVStore
from callrec.services import open_storages
from callrec.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "storage.md"
SECRET = "s3cr3t-Value-Never-Shown"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "storage.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def doc_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def close(stores: dict[str, MediaStore]) -> None:
    import anyio

    async def main() -> None:
        for store in stores.values():
            await store.aclose()

    anyio.run(main)


def test_the_documented_examples_are_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = doc_examples()
    assert len(examples) >= 4  # WebDAV, AWS, MinIO/Ceph, local
    for name in ("CALLREC_DAV_PASSWORD", "CALLREC_S3_SECRET"):
        monkeypatch.setenv(name, SECRET)
    config = read_config(write(tmp_path, "\n".join(examples)))
    kinds = {name: c.type for name, c in config.storages.items()}
    assert kinds == {
        "recordings-dav": "webdav",
        "recordings-s3": "s3",
        "minio": "s3",
        "archive": "local",
    }


def test_building_the_storages_from_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLREC_DAV_PASSWORD", SECRET)
    monkeypatch.setenv("CALLREC_S3_SECRET", SECRET)
    path = write(tmp_path, "\n".join(doc_examples()))
    settings = Settings(
        data_dir=tmp_path / "data",
        storage_config=path,
        upload_storage="minio",
        storage_timeout=3.5,
    )
    storages = open_storages(settings)
    try:
        stores = storages.stores
        assert isinstance(stores["local"], LocalMediaStore)
        assert stores["local"].root == (tmp_path / "data" / "media").resolve()
        assert isinstance(stores["recordings-dav"], WebDAVStore)
        assert stores["recordings-dav"].base_url == "https://dav.example.com/recordings/"
        assert isinstance(stores["recordings-s3"], S3Store)
        assert stores["recordings-s3"].bucket == "gvp-callrecording"
        assert isinstance(stores["archive"], LocalMediaStore)
        assert stores["archive"].root == Path("/mnt/recordings")
        assert storages.uploads() is stores["minio"]
        assert {s.name for s in stores.values()} == set(stores)
        assert stores["minio"].timeout == 3.5  # type: ignore[attr-defined]
    finally:
        close(storages.stores)


def test_without_a_file_there_is_only_the_local_directory(tmp_path: Path) -> None:
    storages = open_storages(Settings(data_dir=tmp_path))
    assert list(storages.stores) == ["local"]
    assert storages.uploads() is storages.stores["local"]


def test_an_unknown_upload_storage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="CALLREC_UPLOAD_STORAGE"):
        open_storages(Settings(data_dir=tmp_path, upload_storage="nowhere"))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[storages.a]\ntype = "webdav"\n', "storages.a.url"),
        ('[storages.a]\ntype = "ftp"\nurl = "ftp://x/"\n', "storages.a"),
        ('[storages.a]\ntype = "webdav"\nurl = "ftp://x/"\n', "storages.a.url"),
        ('[storages.a]\ntype = "webdav"\nurl = "http://u:SECRET@x/"\n', "storages.a.url"),
        ('[storages.a]\ntype = "webdav"\nurl = "http://x/?q=1"\n', "storages.a.url"),
        ('[storages.a]\ntype = "webdav"\nurl = "http://x/"\nusername = "u"\n', "storages.a"),
        ('[storages.a]\ntype = "webdav"\nurl = "http://x/"\ncolour = "red"\n', "colour"),
        ('[storages.a]\ntype = "webdav"\nurl = "http://x/"\nmax_connections = 0\n', "max_conn"),
        (
            '[storages.a]\ntype = "s3"\nbucket = "b"\naccess_key_id = "k"\n'
            'secret_access_key = "SECRET"\n',
            "storages.a.bucket",
        ),
        ('[storages.a]\ntype = "s3"\nbucket = "bkt"\naccess_key_id = "k"\n', "secret_access_key"),
        (
            '[storages.a]\ntype = "s3"\nbucket = "bkt"\naccess_key_id = "k"\n'
            'secret_access_key = "SECRET"\naddressing_style = "sideways"\n',
            "addressing_style",
        ),
        ('[storages.a]\ntype = "local"\n', "storages.a.path"),
        ('[storages.local]\ntype = "local"\npath = "/x"\n', "'local'"),
        ('[storages.webDAV]\ntype = "local"\npath = "/x"\n', "'webDAV'"),
        ('[storages.AWSS3]\ntype = "local"\npath = "/x"\n', "'AWSS3'"),
        ('[storages."a b"]\ntype = "local"\npath = "/x"\n', "'a b'"),
        (
            '[storages.a]\ntype = "s3"\nbucket = "bkt"\naccess_key_id = "k"\n'
            'secret_access_key = "SECRET"\n'
            '[storages.b]\ntype = "s3"\nbucket = "bkt"\naccess_key_id = "k"\n'
            'secret_access_key = "SECRET"\n',
            "same S3 bucket",
        ),
        ("[storages.a\n", "not valid TOML"),
        ('other = "x"\n', "other"),
    ],
)
def test_errors_name_the_file_and_field_never_the_value(
    tmp_path: Path, text: str, where: str
) -> None:
    path = write(tmp_path, text.replace("SECRET", SECRET))
    with pytest.raises(StorageConfigError) as caught:
        read_config(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert where in message
    assert SECRET not in message


def test_secrets_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAV_PW", SECRET)
    path = write(
        tmp_path,
        '[storages.d]\ntype = "webdav"\nurl = "http://x/dav"\nusername = "u"\n'
        'password_env = "DAV_PW"\n',
    )
    config = read_config(path)
    webdav = config.storages["d"]
    assert webdav.password.get_secret_value() == SECRET  # type: ignore[union-attr]
    assert webdav.url == "http://x/dav/"  # type: ignore[union-attr]
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('password_env = "NOT_SET_ANYWHERE_4711"\n', "not set"),
        ('password_env = "DAV_PW"\npassword = "x"\n', "not both"),
    ],
)
def test_bad_secret_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, problem: str
) -> None:
    monkeypatch.setenv("DAV_PW", SECRET)
    monkeypatch.delenv("NOT_SET_ANYWHERE_4711", raising=False)
    path = write(
        tmp_path, f'[storages.d]\ntype = "webdav"\nurl = "http://x/"\nusername = "u"\n{extra}'
    )
    with pytest.raises(StorageConfigError, match=problem) as caught:
        read_config(path)
    assert SECRET not in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="cannot be read"):
        read_config(tmp_path / "absent.toml")


def test_a_world_readable_file_with_secrets_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = '[storages.d]\ntype = "webdav"\nurl = "http://x/"\nusername = "u"\npassword = "p"\n'
    path = write(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="callrec.media"):
        read_config(path)
        assert caplog.text == ""
        path.chmod(0o644)
        read_config(path)
    assert "readable by every user" in caplog.text
    assert "p\n" not in caplog.text


@pytest.mark.parametrize(
    ("fields", "virtual", "endpoint"),
    [
        ('region = "us-west-2"\n', True, "https://s3.us-west-2.amazonaws.com"),
        ("bucket2 = 1\n", None, None),
        (
            'region = "eu-west-1"\naddressing_style = "path"\n',
            False,
            "https://s3.eu-west-1.amazonaws.com",
        ),
        ('endpoint_url = "http://minio:9000/"\n', False, "http://minio:9000"),
        (
            'endpoint_url = "http://minio:9000"\naddressing_style = "virtual"\n',
            True,
            "http://minio:9000",
        ),
    ],
)
def test_s3_endpoints_and_addressing(
    tmp_path: Path, fields: str, virtual: bool | None, endpoint: str | None
) -> None:
    text = (
        '[storages.s]\ntype = "s3"\nbucket = "bkt"\naccess_key_id = "k"\n'
        f'secret_access_key = "x"\n{fields}'
    )
    path = write(tmp_path, text)
    if virtual is None:
        with pytest.raises(StorageConfigError, match="bucket2"):
            read_config(path)
        return
    s3 = read_config(path).storages["s"]
    assert s3.virtual_host is virtual  # type: ignore[union-attr]
    assert s3.endpoint == endpoint  # type: ignore[union-attr]
