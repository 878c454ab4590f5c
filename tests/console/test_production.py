"""In production the test login for privacy officers does not exist; the app runs the scheduled job."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from audit.schemas import Actor, TraceContext
from kluis.app import create_app
from kluis.console import jobs
from kluis.settings import Settings
from kluis.wiring import build_services, initialise, utcnow
from tests.portal.conftest import csrf_of
from vault.services import Context


def production(tmp_path: Path) -> Settings:
    return Settings(
        env="production",
        data_dir=tmp_path,
        allow_sqlite_in_production=True,
        session_secret="s" * 40,
        issuer="https://kluis.example",
        base_url="https://kluis.example",
        checkpoint_interval_seconds=0,
        metrics_token="m" * 40,
    )


def test_the_test_login_is_refused_in_production(tmp_path: Path) -> None:
    settings = production(tmp_path)
    assert jobs.interval(settings) is not None  # the scheduled verification runs in production
    services = build_services(settings)
    initialise(services)
    app = create_app(settings, services)
    answers: dict[str, httpx.Response] = {}

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://kluis.example") as client:
            answers["login"] = await client.get("/fg/inloggen")
            answers["test"] = await client.get("/fg/inloggen/test")
            token = csrf_of(answers["login"].text)
            answers["post"] = await client.post(
                "/fg/inloggen/test", data={"tenant": "x", "csrf_token": token}
            )

    # In a thread of its own: no event loop may be running in this one (Playwright's may be).
    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    services.close()
    assert answers["login"].status_code == 200 and "/fg/inloggen/test" not in answers["login"].text
    assert answers["test"].status_code == 404
    assert answers["post"].status_code == 404  # with a valid form token: still no test login


def test_the_app_runs_the_scheduled_verification_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(env="development", data_dir=tmp_path, checkpoint_interval_seconds=0)
    services = build_services(settings)
    initialise(services)
    with services.db.session() as session:
        ctx = Context(actor=Actor(type="operator", id="t"), trace=TraceContext.new(), now=utcnow())
        tenant = services.vault.create_tenant(session, ctx, "gemeente-s", "Gemeente S")
    monkeypatch.setattr(jobs, "interval", lambda _settings: timedelta(milliseconds=50))
    app = create_app(settings, services)
    console = app.state.console.service
    found: list[bool] = []

    async def run() -> None:
        async with app.router.lifespan_context(app):
            for _ in range(200):
                with services.db.read_session() as session:
                    if console.latest_verification(session, tenant.id) is not None:
                        found.append(True)
                        return
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    assert found == [True]
