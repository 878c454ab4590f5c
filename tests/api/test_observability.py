"""Logs are JSON lines with request ids and exception types only; metrics label route templates."""

from __future__ import annotations

import json
import logging

from kluis.observability import JsonFormatter, current_request_id


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
