"""A burst of first reads of one new access token verifies the token once (kluis.api.auth's
``verified_once``), over real HTTP on loopback, on SQLite and PostgreSQL. A token that is refused is refused
to every read of the burst, each on its own."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from consent.resource import Refusal
from consent.schemas import VerifiedToken
from tests.api.conftest import World, department_token

BURST = 16


def burst(base: str, token: str) -> list[int]:
    """``BURST`` concurrent reads of the record with ``token``; their status codes."""
    statuses: list[int] = []

    async def run() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=BURST)
        async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
            answers = await asyncio.gather(*(client.get("/api/v1/records/inkomen") for _ in range(BURST)))
        statuses.extend(answer.status_code for answer in answers)

    # In a thread of its own: no event loop may be running in this one (Playwright's may be).
    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(120)
    return statuses


def counting_verifications(target: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every verification of an access token from now on, slowed down so that the whole burst
    arrives while the first one runs."""
    guard = target.services.oauth.guard
    verify = guard.verify
    calls: list[str] = []

    def slow_verify(session: Any, token: str, now: Any) -> VerifiedToken | Refusal:
        calls.append(token)
        time.sleep(0.3)
        return verify(session, token, now)

    monkeypatch.setattr(guard, "verify", slow_verify)
    return calls


def test_a_burst_of_first_reads_verifies_the_new_token_once(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, _grant = department_token(world)
    calls = counting_verifications(world, monkeypatch)
    assert burst(world.base, token) == [200] * BURST
    assert calls == [token]
    assert world.services.first_verifications == {}  # nothing left behind


def test_a_refused_token_is_refused_to_every_read_of_the_burst_each_on_its_own(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token, _grant = department_token(world)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"  # the claims of a real token, a bad signature
    calls = counting_verifications(world, monkeypatch)
    assert burst(world.base, forged) == [401] * BURST
    assert calls == [forged] * BURST  # no read took another's refusal, nor a verified result
    assert world.services.first_verifications == {}
