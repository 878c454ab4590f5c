"""The fast lane's own exception path (kluis/api/fastlane.py): an unexpected exception in the record
read becomes the app's 500 problem, with the security headers and the request id, and never its
message. (Every other kind of answer is compared with the full stack in tests/e2e/test_data_api.py.)"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx

from kluis.app import create_app
from kluis.settings import Settings
from kluis.wiring import build_services, initialise


class _Broken:
    def prefetch(self, category: str) -> Any:
        raise RuntimeError("secret detail 999993653")

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_an_unexpected_exception_is_the_apps_500_problem(tmp_path: Path) -> None:
    settings = Settings(env="development", data_dir=tmp_path, checkpoint_interval_seconds=0)
    services = build_services(settings)
    initialise(services)
    app = create_app(settings, services)
    services._lean = _Broken()  # type: ignore[assignment]
    answers: list[httpx.Response] = []

    async def run() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answers.append(await client.get("/api/v1/records/inkomen", headers={"Authorization": "Bearer x"}))
            with app.fast_lane_closed():
                answers.append(
                    await client.get("/api/v1/records/inkomen", headers={"Authorization": "Bearer x"})
                )

    # In a thread of its own: no event loop may be running in this one (Playwright's may be).
    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    thread.join(60)
    services._lean = None
    services.close()
    lane, full = answers
    for answer in (lane, full):
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/problem+json"
        body = answer.json()
        assert body["type"] == "urn:kluis:problem:internal" and body["status"] == 500
        assert "999993653" not in answer.text and "secret" not in answer.text
        assert "Traceback" not in answer.text
    # The lane's 500 passes through the middlewares: headers and the request id, as every answer.
    assert lane.headers["x-content-type-options"] == "nosniff"
    assert lane.headers["x-request-id"] == lane.json()["request_id"]
