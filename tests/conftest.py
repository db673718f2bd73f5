"""Shared fixtures: a fresh data directory, opened services, an app and accounts per test."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from callrec.app import create_app
from callrec.auth import hash_password
from callrec.services import Services
from callrec.settings import Settings
from callrec.store import User

# Real wire bodies recorders send (copied from the shared contract examples).
EXAMPLES = Path(__file__).resolve().parent / "examples"
PASSWORD = "s3cret-pw"
# name -> (role, contact center)
ACCOUNTS = {
    "alice": ("admin", "cc1"),
    "bob": ("admin", "cc2"),
    "sam": ("supervisor", "cc1"),
    "agnes": ("agent", "cc1"),
    "recorder": ("ops", None),
}


def basic(name: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


BACKENDS = ["sqlite", "postgresql"]


def pytest_report_header() -> str:
    from pgserver import status_line

    return status_line()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once when a module setup.py compiles is older than its source: the tests
    would run the code as it was (any make target builds them again)."""
    from test_build import stale_modules

    if stale := stale_modules():
        pytest.exit(
            f"compiled before their sources last changed: {', '.join(stale)};"
            " run `make .venv/.installed-stamp` (any make target does)",
            returncode=2,
        )


@pytest.fixture(scope="session")
def pg_server() -> Any:
    from pgserver import postgres_required, postgres_server, unavailable_reason

    server = postgres_server()
    if server is None:
        reason = unavailable_reason() or "PostgreSQL is unavailable"
        if postgres_required() or os.environ.get("CI"):
            pytest.fail(f"PostgreSQL tests must run in CI: {reason}")
        pytest.skip(reason)
    return server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of the test's backend: a file, or a PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'callrec.db'}"
        return
    from pgserver import fresh_schema

    with fresh_schema(request.getfixturevalue("pg_server")) as url:
        yield url


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema, for tests of PostgreSQL alone."""
    from pgserver import fresh_schema

    with fresh_schema(pg_server) as url:
        yield url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def services(settings: Settings, password_hash: str) -> Iterator[Services]:
    opened = Services.open(settings)
    add_accounts(opened, password_hash)
    yield opened
    opened.close()


def add_accounts(services: Services, password_hash: str) -> None:
    for name, (role, ccid) in ACCOUNTS.items():
        services.store.put_user(User(name, password_hash, role, ccid, name.title(), "Tester"))


@pytest.fixture
def make_client(tmp_path: Path, password_hash: str) -> Iterator[Callable[..., TestClient]]:
    """Build a separate app with settings of its own (root path, CSRF, small limits...), on
    SQLite, with the usual accounts."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make(**overrides: Any) -> TestClient:
            nonlocal count
            count += 1
            settings = Settings(data_dir=tmp_path / f"app{count}", **overrides)
            services = Services.open(settings)
            stack.callback(services.close)
            add_accounts(services, password_hash)
            return stack.enter_context(TestClient(create_app(settings, services)))

        yield make


@pytest.fixture
def client(settings: Settings, services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(settings, services)) as test_client:
        yield test_client


def load_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until ``check()`` holds (what another process or thread does shows later)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def local_recording(rec_id: str = "rec-1", **fields: Any) -> dict[str, Any]:
    """A recording the embedded default accepts: times given, no external media location."""
    doc: dict[str, Any] = {
        "id": rec_id,
        "region": "usw1",
        "callerPhoneNumber": "+1 (650) 466-8888",
        "dialedPhoneNumber": "+14155551234",
        "startTime": "2013-05-17T19:45:32.000+0000",
        "stopTime": "2013-05-17T22:15:36.000+0000",
        "eventHistory": [
            {
                "occurredAt": "2013-05-17T19:45:40.000+0000",
                "event": "Joined",
                "contact": {
                    "type": "Agent",
                    "userName": "kim.lee@example.com",
                    "firstName": "Kim",
                    "lastName": "Lee",
                },
            }
        ],
        "mediaFiles": [],
    }
    doc.update(fields)
    return doc
