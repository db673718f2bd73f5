"""The one typed settings object. Every field is a ``CALLREC_*`` environment variable.

``docs/configuration.md`` lists every field; ``tests/test_docs.py`` checks that it does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Configuration of one callrec process."""

    model_config = SettingsConfigDict(env_prefix="CALLREC_", extra="ignore")

    data_dir: Path = Field(
        Path("./callrec-data"),
        description="Directory holding the embedded SQLite database and the local media store.",
    )
    database_url: str | None = Field(
        None,
        description="Database to use. Unset: `sqlite:///<data_dir>/callrec.db`. "
        "`sqlite:///PATH` names another SQLite file; `postgresql://USER@HOST:PORT/DB` uses "
        "PostgreSQL.",
    )
    database_pool_size: int = Field(
        10, ge=1, le=1000, description="PostgreSQL connections per process (at most)."
    )
    database_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds a PostgreSQL operation may wait (for a connection, to connect, "
        "or for a statement) before the request fails with statusCode 4.",
    )
    media_dir: Path | None = Field(
        None, description="Local media store directory. Unset: `<data_dir>/media`."
    )
    storage_config: Path | None = Field(
        None,
        description="TOML file declaring the media storages (WebDAV servers, S3 buckets) and "
        "their credentials; see docs/storage.md. Unset: only the local media directory.",
    )
    upload_storage: str = Field(
        "local", description="Name of the storage that receives `PUT .../media/{mediaId}` uploads."
    )
    delete_external_media: bool = Field(
        False,
        description="Whether deleting a recording also deletes its media files on external "
        "storages (WebDAV, S3). Files callrec uploaded itself are always deleted.",
    )
    storage_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a media storage may take to answer before playback fails with "
        "504 (and 502 when it fails).",
    )
    session_seconds: float = Field(
        8 * 3600.0, gt=0, description="Lifetime of a web console session, in seconds."
    )
    public_url: str | None = Field(
        None,
        description="Scheme, host and port used as the base of every `mediaUri` "
        "(e.g. `https://rec.example.com`). Unset: taken from each request.",
    )
    root_path: str = Field(
        "",
        description="Prefix under which the API answers, e.g. `/cloud-web` makes the API "
        "answer at `/cloud-web/api/v2/...`.",
    )
    region: str | None = Field(
        None,
        description="Region of this server. When set, reads, plays and searches only see "
        "recordings of this region.",
    )
    csrf: bool = Field(
        False,
        description="GWS CSRF protection: every POST/PUT/DELETE must echo the token "
        "handed out by `GET /api/v2/me`.",
    )
    csrf_secret: SecretStr | None = Field(
        None,
        description="Key that CSRF tokens are derived from. Unset: a random key kept in the "
        "database, shared by every process using it.",
    )
    page_size: int = Field(
        100, ge=1, le=10_000, description="Results per search page when no `limit` is given."
    )
    max_page_size: int = Field(
        1000, ge=1, le=10_000, description="Largest `limit` a search may ask for."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest JSON request body accepted, in bytes."
    )
    max_upload_bytes: int = Field(
        2 * 1024 * 1024 * 1024, ge=1, description="Largest media upload accepted, in bytes."
    )
    auth_cache_seconds: float = Field(
        300.0,
        ge=0,
        description="How long a verified password is remembered, so that each request does "
        "not pay for a slow hash. 0 disables the cache.",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level: critical, error, warning, info (with access log) or debug."
    )

    @model_validator(mode="after")
    def _page_fits(self) -> Settings:
        if self.page_size > self.max_page_size:
            raise ValueError("CALLREC_PAGE_SIZE must not exceed CALLREC_MAX_PAGE_SIZE")
        return self

    @field_validator("root_path")
    @classmethod
    def _clean_root_path(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        return value

    @field_validator("public_url")
    @classmethod
    def _clean_public_url(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'callrec.db'}"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"
