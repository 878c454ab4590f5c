"""Loads and saves the portal session around every page request (pure ASGI, pages only).

API paths never pay for it: department clients have no portal session. The session's data is
exposed as ``request.session`` (what authlib's OAuth client expects) and the whole state as
``request.scope["kluis.portal"]``. A visitor without a session gets one stored only if ``admit_new``
allows it (a limit per address, ``kluis.web.install``): anonymous page views must not be able to
fill the session table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from http.cookies import SimpleCookie

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kluis.web.sessions import SessionState, SessionStore

PREFIX = "/portaal"


class PortalSessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: SessionStore,
        secure: bool,
        clock: Callable[[], datetime],
        prefix: str = PREFIX,
        admit_new: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.admit_new = admit_new
        self.prefix, self.static = prefix, prefix + "/static/"
        self.store = store
        self.secure = secure
        self.clock = clock
        # The __Host- prefix makes the browser refuse the cookie unless it is Secure, host-only and
        # for path "/": a sibling subdomain cannot plant or overwrite it.
        self.cookie_name = "__Host-kluis" if secure else "kluis_session"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix) or path.startswith(self.static):
            await self.app(scope, receive, send)
            return
        raw_id = self._cookie(scope)
        state: SessionState = await anyio.to_thread.run_sync(self.store.load, raw_id, self.clock())
        scope["session"] = state.data
        scope["kluis.portal"] = state

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = await anyio.to_thread.run_sync(self._save, state, scope)
                if value is not None:
                    headers = list(message.get("headers", []))
                    headers.append((b"set-cookie", self._set_cookie(value).encode("latin-1")))
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _save(self, state: SessionState, scope: Scope) -> str | None:
        """``SessionStore.save``, unless it would store a new session ``admit_new`` refuses (then
        nothing is stored and no cookie is set: a form on that page fails its CSRF check)."""
        new = state.raw_id is None and not state.destroy and state.changed()
        if new and self.admit_new is not None and not self.admit_new(scope):
            return None
        return self.store.save(state, self.clock())

    def _cookie(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                cookie: SimpleCookie = SimpleCookie()
                try:
                    cookie.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 - a malformed cookie header means no session
                    return None
                morsel = cookie.get(self.cookie_name)
                if morsel is not None:
                    return morsel.value
        return None

    def _set_cookie(self, value: str) -> str:
        parts = [f"{self.cookie_name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
        if self.secure:
            parts.append("Secure")
        if not value:
            parts.append("Max-Age=0")
        return "; ".join(parts)
