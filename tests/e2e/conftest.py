"""End-to-end tests drive a real Kluis over HTTP on loopback.

``live_server(settings)`` runs the real app (``create_app``) under uvicorn in a background thread on
the 127.0.0.1 address of ``settings.issuer`` and yields the base URL; use ``free_port()`` to pick
the port before building the settings. The ``kluis_instance`` fixture does all of it on a fresh
SQLite data directory with ``kluis init`` applied.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn

from kluis.api.fastlane import FastLaneApp
from kluis.app import create_app
from kluis.settings import Settings
from kluis.wiring import Services, build_services, initialise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(
    settings: Settings, services: Services | None = None, created: list[FastLaneApp] | None = None
) -> Iterator[str]:
    """Serve ``create_app(settings, services)`` on the host and port of ``settings.issuer``; the
    app is appended to ``created``, if given."""
    parts = urlsplit(settings.public_base_url)
    assert parts.hostname == "127.0.0.1" and parts.port, "live servers listen on loopback only"
    app = create_app(settings, services)
    if created is not None:
        created.append(app)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=parts.port, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="kluis-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield settings.public_base_url
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class LiveKluis:
    base_url: str
    settings: Settings
    services: Services

    def url(self, path: str) -> str:
        return self.base_url + path


def development_settings(data_dir: Path, port: int, **overrides: Any) -> Settings:
    base = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir,
        "issuer": base,
        "base_url": base,
        "database_url": None,
        "rate_limit_per_minute": 1_000_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def kluis_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKluis]:
    """A running Kluis (SQLite, development mode, poll interval 1 s) for one test module."""
    settings = development_settings(tmp_path_factory.mktemp("kluis"), free_port(), poll_interval_seconds=1)
    services = build_services(settings)
    initialise(services)
    with live_server(settings, services) as base:
        yield LiveKluis(base, settings, services)
