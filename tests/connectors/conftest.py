"""Fixtures for the connector tests: one stand-in BRP server per session (real HTTP on loopback),
reset before every test, and fake time so retries and cool-downs take no real seconds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors import ApiKeyAuth, BrpPersonenConnector, CircuitBreaker, RetryPolicy, SourceAuth, SourceClient
from tests.support.brp_standin import (
    REPO,
    StandinServer,
    StandinState,
    load_personen,
    load_raw_personen,
    serve,
)
from vault.bsn import is_valid_bsn

BRP_SCHEMA_PATH = REPO / "vault" / "categories" / "brp.persoon.json"


class FakeTime:
    """Monotonic seconds, a wall clock and a ``sleep`` that only records and moves both on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = datetime(2026, 3, 3, 13, 2, tzinfo=UTC)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall_clock(self) -> datetime:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def raw_personen() -> list[dict[str, Any]]:
    """The 1,176 persons in the BRP mock's own form (what the stand-in converts and serves)."""
    return load_raw_personen()


@pytest.fixture(scope="session")
def standin_server(raw_personen: list[dict[str, Any]]) -> Iterator[StandinServer]:
    state = StandinState(personen=load_personen(raw_personen))
    state.reset()
    with serve(state) as server:
        yield server


@pytest.fixture
def standin(standin_server: StandinServer) -> StandinServer:
    standin_server.state.reset()
    return standin_server


@pytest.fixture(scope="session")
def brp_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(BRP_SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """One connection pool for the whole session, as the shell would share one."""
    with httpx.Client(follow_redirects=False) as client:
        yield client


@pytest.fixture
def make_client(fake_time: FakeTime, http: httpx.Client) -> Iterator[Callable[..., SourceClient]]:
    """Builds :class:`SourceClient` values on fake time over the shared pool; closed after the test."""
    made: list[SourceClient] = []

    def make(
        *,
        auth: SourceAuth | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        timeout: float = 5.0,
        name: str = "brp",
    ) -> SourceClient:
        client = SourceClient(
            name=name,
            auth=auth if auth is not None else ApiKeyAuth("test-key"),
            retry=retry if retry is not None else RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0),
            breaker=breaker if breaker is not None else CircuitBreaker(monotonic=fake_time.monotonic),
            timeout=timeout,
            client=http,
            sleep=fake_time.sleep,
            wall_clock=fake_time.wall_clock,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def make_brp(
    standin: StandinServer,
    brp_schema: dict[str, Any],
    fake_time: FakeTime,
    make_client: Callable[..., SourceClient],
) -> Callable[..., BrpPersonenConnector]:
    """Builds a BRP connector against the stand-in; keyword arguments go to :class:`SourceClient`."""

    def make(*, gemeente_van_inschrijving: str | None = None, **client_args: Any) -> BrpPersonenConnector:
        return BrpPersonenConnector(
            name="brp",
            base_url=standin.brp_url,
            client=make_client(**client_args),
            schema=brp_schema,
            gemeente_van_inschrijving=gemeente_van_inschrijving,
            wall_clock=fake_time.wall_clock,
        )

    return make


@pytest.fixture(scope="session")
def unknown_bsn(raw_personen: list[dict[str, Any]]) -> str:
    """A BSN that passes the 11-proef but is not in the test data."""
    known = {p["burgerservicenummer"] for p in raw_personen}
    return next(
        bsn for n in range(123_456_782, 124_000_000) if is_valid_bsn(bsn := str(n)) and bsn not in known
    )
