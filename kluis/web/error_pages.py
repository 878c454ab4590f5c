"""The portal's and the console's error pages: one handler shape for both areas.

Each area has its own error hierarchy, templates and login page; what an error page does is the
same: a missing login goes to the login page, anything else renders the area's error template with
the error's catalogue message and status, a too-many-logins error adds ``Retry-After``, and a
refused login leaves a log line with its reason code (ASVS 16.3.1; never a value from the request).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from kluis.web.errors import LoginRefusedError, LoginsLimitedError


@runtime_checkable
class PageError(Protocol):
    """What both areas' errors carry: a catalogue message id and an HTTP status."""

    status: int
    message: str


def error_page_handler(
    *, area: str, login_required: type[Exception], login_url: str, template: str, log: logging.Logger
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The exception handler of one area: ``area`` names it in the log line and is where its parts
    live on ``app.state`` (``portal``, ``console``: each has ``templates``)."""

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, login_required):
            return RedirectResponse(login_url, status_code=303)
        assert isinstance(exc, PageError)  # registered for the area's error base only
        templates = getattr(request.app.state, area).templates
        page: Response = templates.render(request, template, message=exc.message, status=exc.status)
        if isinstance(exc, LoginsLimitedError):
            page.headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, LoginRefusedError):
            log.info("%s login refused: %s", area, exc.reason)
        return page

    return on_error
