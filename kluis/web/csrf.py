"""CSRF protection: a synchronizer token per session, checked on every form post.

SameSite=Lax already keeps the session cookie off cross-site POSTs; the token is the second,
independent line, and it also protects the anonymous forms (test login, language switch).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from kluis.web.errors import CsrfError
from kluis.web.sessions import SessionState

FIELD = "csrf_token"


def token(state: SessionState) -> str:
    """The session's token, created on first use (which also creates the session)."""
    value = state.data.get("csrf")
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        state.data["csrf"] = value
    return value


async def require_csrf(request: Request) -> None:
    """Dependency of every POST route: refuse unless the form carries the session's token."""
    state: SessionState = request.scope["kluis.portal"]
    expected = state.data.get("csrf")
    form = await request.form()
    sent = form.get(FIELD)
    if not isinstance(expected, str) or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise CsrfError
