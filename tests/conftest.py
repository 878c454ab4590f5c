"""Shared fixtures: databases (SQLite and a real PostgreSQL, each test isolated), clocks, settings.

PostgreSQL isolation: every test gets its own schema in the ``test`` database (``search_path`` set
on connect), migrated from scratch and dropped afterwards. Set ``KLUIS_TEST_POSTGRES_URL`` to use
another server; PostgreSQL being down is an error, not a skip (CI must test both databases).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from kluis.db import Database

POSTGRES_URL = os.environ.get("KLUIS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class Clock:
    """A settable clock: services take ``now`` as an argument, tests move it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 3, 13, 2, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def postgres_schema_url(schema: str) -> str:
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema(prefix: str = "t_") -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema; dropped afterwards (also for module fixtures)."""
    schema = prefix + secrets.token_hex(6)
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield postgres_schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test; dropped afterwards."""
    with postgres_schema() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kluis.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Parametrises a test over both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kluis.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database (SQLite file or PostgreSQL schema), new for each test."""
    database = Database(db_url)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


# -- one browser per browser-test module ------------------------------------------------------------
# Playwright's sync API allows one instance per process at a time and, while it runs, keeps an
# event loop running in the main thread: any later ``asyncio.run`` in the same process (tests that
# drive an ASGI app in-process) fails with "cannot be called from a running event loop". So the
# browser lives for one module and stops with it; the browser modules run one after the other.
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
