"""A fast lane for the data API's hottest route, ``GET /api/v1/records/{category}``.

Between the server and an endpoint, Starlette and FastAPI put layers this route does not use: the
error middleware (only to call the handler for ``Exception``), FastAPI's telemetry and body-limit
middlewares (telemetry is off; a GET has no body), the portal's session middleware (pages only),
the exception middleware (only to call our handlers), FastAPI's exit stack (the endpoint has no
dependencies) and the router's walk over the routes. Measured with the read's own 2 KiB answer
and headers, they cost ~90 µs of the event loop's CPU per request here: a fifth of the read
(docs/performance.md).

The lane runs the same endpoint inside the same two middlewares, built from the same list as the
application's (``KluisMiddleware``: request id, trace context, request limits, security headers;
``MetricsMiddleware``), and answers exceptions with the application's own exception handlers,
looked up as Starlette does (the first class in the exception's MRO that has one). The route's
own pattern decides whether a request takes the lane, so it matches what the router would match:
this is the first route that can match these paths (``kluis.api.routers.include_all``). Every
other request, and every method but GET, takes the full stack.

One difference, on purpose: an unexpected exception's 500 problem passes through the two
middlewares here (so it carries the security headers and the request id); in the full stack
Starlette's error middleware answers it outside them, and re-raises it for the server to log.
Here ``kluis.api.problems`` logs it (its type, never its message) and it is not raised again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Response | Awaitable[Response]]


class FastLaneApp(FastAPI):
    """FastAPI with one route that can skip the framework's layers (see the module's text)."""

    _lane: ASGIApp | None = None
    _lane_route: APIRoute | None = None
    _lane_prefix: str = ""

    def open_fast_lane(self, route: APIRoute, middleware: Sequence[Middleware]) -> None:
        """Serve GET requests for ``route`` through ``middleware`` (innermost first, as added with
        ``add_middleware``) around the endpoint, without the rest of the stack."""
        lane: ASGIApp = _Endpoint(self, route)
        for cls, args, kwargs in middleware:
            lane = cls(lane, *args, **kwargs)
        self._lane, self._lane_route = lane, route
        self._lane_prefix = route.path_format.split("{", 1)[0]

    @contextmanager
    def fast_lane_closed(self) -> Iterator[None]:
        """Every request takes the full stack meanwhile (tests compare the two)."""
        lane, route = self._lane, self._lane_route
        self._lane = self._lane_route = None
        try:
            yield
        finally:
            self._lane, self._lane_route = lane, route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane, route = self._lane, self._lane_route
        if (
            lane is not None
            and route is not None
            and scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(self._lane_prefix)
            and not self.root_path
        ):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                # What Starlette and the router would have put in the scope.
                scope["app"] = self
                scope.setdefault("router", self.router)
                scope["route"] = route
                scope.update(child_scope)
                await lane(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _Endpoint:
    """The route's endpoint (it takes the request and returns its response, see
    ``kluis.api.records.RequestOnlyRoute``), with the application's exception handlers."""

    def __init__(self, app: FastAPI, route: APIRoute) -> None:
        self.app = app
        self.endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self.endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if isinstance(answer, Awaitable) else answer
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Handler | None:
        handlers: dict[Any, Handler] = self.app.exception_handlers
        for cls in type(exc).__mro__:
            if cls in handlers:
                return handlers[cls]
        return None
