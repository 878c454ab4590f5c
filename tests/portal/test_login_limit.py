"""Logins have a rate limit per client address, shared by the portal and the console: the attempt
over the limit gets a 429 page with ``Retry-After`` in the visitor's language, whatever it sent.
New anonymous sessions have one too: over it the page is shown, but nothing is stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import func, select

from kluis.app import create_app
from kluis.settings import Settings
from kluis.web.models import PortalSession
from kluis.wiring import build_services, initialise

Client = Callable[[], httpx.AsyncClient]


def visits(tmp_path: Path, script: Callable[[Client], Awaitable[None]], **settings: Any) -> int:
    """Run ``script`` against a fresh app with these settings (it opens clients with the factory it
    gets: each is a visitor with a cookie jar of its own, all from one address); the stored sessions."""
    configured = Settings(env="development", data_dir=tmp_path, checkpoint_interval_seconds=0, **settings)
    services = build_services(configured)
    initialise(services)
    transport = httpx.ASGITransport(app=create_app(configured, services))

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

    # In a thread of its own: no event loop may be running in this one (Playwright's may be).
    thread = threading.Thread(target=asyncio.run, args=(script(client),))
    thread.start()
    thread.join(60)
    with services.db.read_session() as session:
        stored = int(session.exec(select(func.count()).select_from(PortalSession)).one())
    services.close()
    return stored


def test_logins_over_the_limit_of_an_address_get_429(tmp_path: Path) -> None:
    answers: list[httpx.Response] = []

    async def script(visitor: Client) -> None:
        async with visitor() as client:
            for _ in range(3):  # no form token: refused either way, but each attempt counts
                answers.append(await client.post("/portaal/inloggen/test", data={"bsn": "999993653"}))
            answers.append(await client.get("/fg/inloggen/oidc"))  # the console shares the budget
            answers.append(await client.get("/portaal/inloggen"))  # the login page itself: no limit
            answers.append(await client.get("/portaal/inloggen/oidc", headers={"Accept-Language": "en"}))

    visits(tmp_path, script, login_rate_limit_per_minute=2)
    first, second, third, console, page, english = answers
    assert first.status_code == second.status_code == 403  # the missing form token
    for limited in (third, console, english):
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["content-type"].startswith("text/html")
    assert "Te veel inlogpogingen" in third.text and "Te veel inlogpogingen" in console.text
    assert "Too many login attempts" in english.text
    assert page.status_code == 200


def test_new_anonymous_sessions_over_the_limit_of_an_address_are_not_stored(tmp_path: Path) -> None:
    answers: list[httpx.Response] = []
    returning: list[httpx.Response] = []

    async def script(visitor: Client) -> None:
        async with visitor() as kept:  # a visitor who keeps their cookie: one new session, theirs
            for _ in range(2):
                returning.append(await kept.get("/portaal/inloggen/test"))
        for path in ("/portaal/inloggen/test", "/fg/inloggen/test", "/portaal/inloggen/test"):
            # Fresh visitors (no cookie) from the same address: the console shares the budget.
            async with visitor() as fresh:
                answers.append(await fresh.get(path))

    stored = visits(tmp_path, script, new_session_rate_limit_per_minute=3)
    assert [a.status_code for a in returning + answers] == [200] * 5  # every page is shown
    assert "set-cookie" in returning[0].headers and "set-cookie" not in returning[1].headers
    assert ["set-cookie" in a.headers for a in answers] == [True, True, False]
    assert stored == 3  # the returning visitor's, and two of the three fresh ones


def test_a_new_session_limit_that_does_not_answer_shows_the_page_and_stores_nothing(tmp_path: Path) -> None:
    answers: list[httpx.Response] = []

    async def script(visitor: Client) -> None:
        async with visitor() as fresh:
            answers.append(await fresh.get("/portaal/inloggen/test"))

    # Counters shared through a Redis that does not answer (nothing listens on port 1).
    stored = visits(tmp_path, script, redis_url="redis://127.0.0.1:1/0")
    [page] = answers
    assert page.status_code == 200 and "set-cookie" not in page.headers and stored == 0
