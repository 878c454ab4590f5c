"""Logins have a rate limit per client address, shared by the portal and the console: the attempt
over the limit gets a 429 page with ``Retry-After`` in the visitor's language, whatever it sent.
New anonymous sessions have one too: over it the page is shown, but nothing is stored."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
from sqlmodel import func, select

from kluis.app import create_app
from kluis.settings import Settings
from kluis.web.models import PortalSession
from kluis.wiring import build_services, initialise


def test_logins_over_the_limit_of_an_address_get_429(tmp_path: Path) -> None:
    settings = Settings(
        env="development", data_dir=tmp_path, checkpoint_interval_seconds=0, login_rate_limit_per_minute=2
    )
    services = build_services(settings)
    initialise(services)
    app = create_app(settings, services)
    answers: list[httpx.Response] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for _ in range(3):  # no form token: refused either way, but each attempt counts
                answers.append(await client.post("/portaal/inloggen/test", data={"bsn": "999993653"}))
            answers.append(await client.get("/fg/inloggen/oidc"))  # the console shares the budget
            answers.append(await client.get("/portaal/inloggen"))  # the login page itself: no limit
            answers.append(await client.get("/portaal/inloggen/oidc", headers={"Accept-Language": "en"}))

    # In a thread of its own: no event loop may be running in this one (Playwright's may be).
    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    services.close()
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
    settings = Settings(
        env="development",
        data_dir=tmp_path,
        checkpoint_interval_seconds=0,
        new_session_rate_limit_per_minute=3,
    )
    services = build_services(settings)
    initialise(services)
    app = create_app(settings, services)
    answers: list[httpx.Response] = []
    returning: list[httpx.Response] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as kept:
            # A visitor who keeps their cookie: one new session, then it is theirs.
            for _ in range(2):
                returning.append(await kept.get("/portaal/inloggen/test"))
        for path in ("/portaal/inloggen/test", "/fg/inloggen/test", "/portaal/inloggen/test"):
            # Fresh visitors (no cookie) from the same address: the console shares the budget.
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as fresh:
                answers.append(await fresh.get(path))

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    with services.db.read_session() as session:
        stored = session.exec(select(func.count()).select_from(PortalSession)).one()
    services.close()
    assert [a.status_code for a in returning + answers] == [200] * 5  # every page is shown
    assert "set-cookie" in returning[0].headers and "set-cookie" not in returning[1].headers
    assert ["set-cookie" in a.headers for a in answers] == [True, True, False]
    assert stored == 3  # the returning visitor's, and two of the three fresh ones
