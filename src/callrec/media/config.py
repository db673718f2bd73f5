"""The storage configuration file (``CALLREC_STORAGE_CONFIG``, TOML) and the stores it builds.

```toml
[storages.recordings]
type = "webdav"
url = "https://dav.example.com/recordings/"
username = "callrec"
password_env = "DAV_PASSWORD"      # or: password = "..."
```

docs/storage.md documents every field. Errors name the file and the field, never a value
(a value may be a secret).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from callrec.media import MediaStore
from callrec.media.local import LocalMediaStore
from callrec.media.remote import make_client
from callrec.media.s3 import S3Store
from callrec.media.sigv4 import Credentials
from callrec.media.webdav import WebDAVStore

log = logging.getLogger("callrec.media")
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
SECRETS = ("password", "secret_access_key", "session_token")
RESERVED = {"local", "webdav", "awss3"}


class StorageConfigError(ValueError):
    """The storage configuration cannot be used; the message says where and why."""


class _Storage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_environment(cls, data: Any) -> Any:
        """``password_env = "NAME"`` reads the secret from environment variable NAME."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for field in SECRETS:
            variable = data.pop(f"{field}_env", None)
            if variable is None:
                continue
            if field in data:
                raise ValueError(f"give {field} or {field}_env, not both")
            if not isinstance(variable, str) or variable not in os.environ:
                raise ValueError(f"{field}_env names an environment variable that is not set")
            data[field] = os.environ[variable]
        return data


class LocalConfig(_Storage):
    type: Literal["local"]
    path: Path


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials (use username and password)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or a fragment")
    return url


class _HttpStorage(_Storage):
    verify: bool | Path = Field(True, description="TLS verification: true, false, or a CA file.")
    max_connections: int = Field(100, ge=1, le=10_000)

    @property
    def tls_verify(self) -> bool | str:
        return str(self.verify) if isinstance(self.verify, Path) else self.verify


class WebDAVConfig(_HttpStorage):
    type: Literal["webdav"]
    url: str
    username: str | None = None
    password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        return _http_url(url).rstrip("/") + "/"

    @model_validator(mode="after")
    def _both_or_neither(self) -> WebDAVConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


class S3Config(_HttpStorage):
    type: Literal["s3"]
    bucket: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    access_key_id: str
    secret_access_key: SecretStr
    session_token: SecretStr | None = None

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        return None if url is None else _http_url(url).rstrip("/")

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"

    @property
    def virtual_host(self) -> bool:
        if self.addressing_style != "auto":
            return self.addressing_style == "virtual"
        host = urlsplit(self.endpoint).hostname or ""
        return host.endswith(".amazonaws.com") and "." not in self.bucket


StorageConfig = Annotated[LocalConfig | WebDAVConfig | S3Config, Field(discriminator="type")]


class StorageFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    storages: dict[str, StorageConfig] = {}


def read_config(path: Path) -> StorageFile:
    """Parse and validate the file; raises ``StorageConfigError``."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise StorageConfigError(f"{path}: cannot be read ({error.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise StorageConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        config = StorageFile.model_validate(raw)
    except ValidationError as error:
        # Locations and reasons only: the input may be a secret.
        problems = "; ".join(
            f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors(include_input=False, include_url=False)
        )
        raise StorageConfigError(f"{path}: {problems}") from None
    for name in config.storages:
        if not NAME.fullmatch(name) or name.lower() in RESERVED:
            raise StorageConfigError(
                f"{path}: storage name {name!r} must be 1-64 characters of [A-Za-z0-9._-], "
                "other than 'local' (the built-in media directory), 'webDAV' and 'awsS3' "
                "(the storage types recorders name)"
            )
    buckets = [c.bucket for c in config.storages.values() if isinstance(c, S3Config)]
    if len(buckets) != len(set(buckets)):
        raise StorageConfigError(f"{path}: two storages name the same S3 bucket")
    _warn_if_readable(path, config)
    return config


def _where(loc: tuple[int | str, ...]) -> str:
    """``storages.NAME.field``, without the union member pydantic puts in between."""
    kept = [str(x) for i, x in enumerate(loc) if not (i == 2 and x in ("local", "webdav", "s3"))]
    return ".".join(kept)


def _warn_if_readable(path: Path, config: StorageFile) -> None:
    holds_secrets = any(
        getattr(c, field, None) is not None for c in config.storages.values() for field in SECRETS
    )
    if holds_secrets and path.stat().st_mode & stat.S_IROTH:
        log.warning("%s holds secrets and is readable by every user: chmod o-r it", path)


def build_store(
    name: str, config: LocalConfig | WebDAVConfig | S3Config, timeout: float
) -> MediaStore:
    if isinstance(config, LocalConfig):
        return LocalMediaStore(config.path, name=name, timeout=timeout)
    if isinstance(config, WebDAVConfig):
        auth = None
        if config.username is not None and config.password is not None:
            auth = httpx.BasicAuth(config.username, config.password.get_secret_value())
        client = make_client(
            timeout, max_connections=config.max_connections, verify=config.tls_verify, auth=auth
        )
        return WebDAVStore(name, config.url, client, timeout)
    client = make_client(timeout, max_connections=config.max_connections, verify=config.tls_verify)
    return S3Store(
        name,
        bucket=config.bucket,
        endpoint_url=config.endpoint,
        region=config.region,
        credentials=Credentials(
            config.access_key_id, config.secret_access_key, config.session_token
        ),
        virtual_host=config.virtual_host,
        client=client,
        timeout=timeout,
    )
