"""Logins have a rate limit per client address, shared by the portal and the console: the attempt
over the limit gets a 429 page with ``Retry-After`` in the visitor's language, whatever it sent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx

from kluis.app import create_app
from kluis.settings import Settings
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
