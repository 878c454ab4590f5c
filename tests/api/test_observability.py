"""Logs are JSON lines with request ids and exception types only; metrics label route templates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx

from kluis.observability import JsonFormatter, current_request_id
from kluis.wiring import build_services, initialise
from tests.e2e.conftest import development_settings, free_port, live_server


def test_log_lines_are_json_and_never_carry_exception_messages() -> None:
    token = current_request_id.set("abc123")
    try:
        raise ValueError("BSN 999993653 in a message")
    except ValueError:
        record = logging.LogRecord("kluis.test", logging.ERROR, __file__, 1, "read failed", (), None)
        import sys

        record.exc_info = sys.exc_info()
        line = JsonFormatter().format(record)
    finally:
        current_request_id.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "read failed" and entry["level"] == "error"
    assert entry["request_id"] == "abc123" and entry["exception"] == "ValueError"
    assert "999993653" not in line


def test_log_lines_of_a_request_carry_its_trace_id_and_request_id(tmp_path: Path) -> None:
    settings = development_settings(tmp_path, free_port())
    services = build_services(settings)
    initialise(services)
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    handler = Capture(logging.INFO)
    watched = logging.getLogger("kluis.consent")
    watched.addHandler(handler)
    level = watched.level
    watched.setLevel(logging.INFO)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        with live_server(settings, services) as base:
            # A token that cannot be tied to any tenant: refused, and logged (not audited).
            bearer = {"Authorization": "Bearer not-a-token"}
            parent = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
            answer = httpx.get(base + "/api/v1/records/inkomen", headers={**bearer, **parent})
            other = httpx.get(base + "/api/v1/records/inkomen", headers=bearer)
    finally:
        watched.removeHandler(handler)
        watched.setLevel(level)
    assert answer.status_code == 401 and other.status_code == 401
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 2, entries
    assert entries[0]["trace_id"] == trace
    assert entries[0]["request_id"] == answer.headers["x-request-id"]
    # Without a traceparent the request starts its own trace, and its lines carry that one.
    assert len(entries[1]["trace_id"]) == 32 and entries[1]["trace_id"] != trace
    assert entries[1]["request_id"] == other.headers["x-request-id"]
    assert "not-a-token" not in "".join(lines)
