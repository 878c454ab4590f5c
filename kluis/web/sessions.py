"""Server-side portal sessions, stored in the database so that every node of a multi-node
deployment sees them.

The cookie carries 256 random bits; the table keeps only their SHA-256, so reading the database
does not let anyone take over a session. A session ends after ``idle`` without requests, after
``max_age`` whatever happens, and at logout. Logging in replaces the id (no session fixation).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import col

from kluis.db import Database
from kluis.settings import Settings
from kluis.web.models import PortalSession

# Refresh ``last_seen_at`` at most this often: a page view should not always cost a write.
TOUCH_EVERY = timedelta(seconds=60)


def hash_id(raw_id: str) -> str:
    return hashlib.sha256(raw_id.encode()).hexdigest()


@dataclass
class SessionState:
    """The session of one request, as the page code sees it.

    ``data`` is the dictionary Starlette code (and authlib's OAuth client) reads as
    ``request.session``; changes to it are noticed by comparing it with what was loaded.
    """

    raw_id: str | None = None
    tenant_id: str | None = None
    resident_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    last_seen_at: datetime | None = None
    loaded_data: str = "{}"
    rotate: bool = False
    destroy: bool = False

    @property
    def logged_in(self) -> bool:
        return self.resident_id is not None and self.tenant_id is not None

    def login(self, tenant_id: str, resident_id: str) -> None:
        """Bind the session to a resident; the id is replaced when the response is sent."""
        self._bind(tenant_id, resident_id)

    def login_role(self, tenant_id: str, role: str, subject: str) -> None:
        """Bind the session to a staff role of one tenant, no resident (the privacy officer's
        console, ``kluis.console``, reads ``data["role"]`` and ``data["subject"]``)."""
        self._bind(tenant_id, None)
        self.data["role"], self.data["subject"] = role, subject

    def _bind(self, tenant_id: str, resident_id: str | None) -> None:
        language = self.data.get("lang")
        self.data.clear()
        if language:
            self.data["lang"] = language
        self.tenant_id, self.resident_id, self.rotate = tenant_id, resident_id, True

    def logout(self) -> None:
        self.destroy = True

    def changed(self) -> bool:
        return self.rotate or json.dumps(self.data, sort_keys=True) != self.loaded_data


class SessionStore:
    def __init__(self, db: Database, *, idle: timedelta, max_age: timedelta) -> None:
        self.db = db
        self.idle = idle
        self.max_age = max_age

    @classmethod
    def configured(cls, db: Database, settings: Settings) -> SessionStore:
        """The store with the lifetimes of ``KLUIS_SESSION_IDLE_MINUTES`` and ``_MAX_HOURS``."""
        return cls(
            db,
            idle=timedelta(minutes=settings.session_idle_minutes),
            max_age=timedelta(hours=settings.session_max_hours),
        )

    def load(self, raw_id: str | None, now: datetime) -> SessionState:
        """The live session for a cookie value, or a fresh, empty one."""
        if not raw_id or len(raw_id) > 100:
            return SessionState()
        with self.db.read_session() as session:
            row = session.get(PortalSession, hash_id(raw_id))
            if row is None or row.expires_at <= now or row.last_seen_at + self.idle <= now:
                return SessionState()
            data = json.loads(row.data)
            return SessionState(
                raw_id=raw_id,
                tenant_id=row.tenant_id,
                resident_id=row.resident_id,
                data=data,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                loaded_data=json.dumps(data, sort_keys=True),
            )

    def save(self, state: SessionState, now: datetime) -> str | None:
        """Persist ``state``; returns the cookie value to set, ``""`` to clear it, None to leave it."""
        if state.destroy:
            if state.raw_id is not None:
                self._delete(hash_id(state.raw_id))
            return ""
        if not state.changed():
            if state.raw_id is not None and state.last_seen_at and now - state.last_seen_at >= TOUCH_EVERY:
                self._touch(hash_id(state.raw_id), now)
            return None
        old = state.raw_id
        if old is None or state.rotate:
            state.raw_id, state.created_at = secrets.token_urlsafe(32), now
        assert state.raw_id is not None and state.created_at is not None
        with self.db.session() as session:
            if old is not None and old != state.raw_id:
                session.execute(delete(PortalSession).where(col(PortalSession.id_hash) == hash_id(old)))
            row = session.get(PortalSession, hash_id(state.raw_id)) or PortalSession(
                id_hash=hash_id(state.raw_id),
                created_at=state.created_at,
                last_seen_at=now,
                expires_at=state.created_at + self.max_age,
            )
            row.tenant_id, row.resident_id = state.tenant_id, state.resident_id
            row.data = json.dumps(state.data, sort_keys=True)
            row.last_seen_at = now
            session.add(row)
            session.commit()
        state.rotate = False
        return state.raw_id

    def _touch(self, id_hash: str, now: datetime) -> None:
        with self.db.session() as session:
            row = session.get(PortalSession, id_hash)
            if row is not None:
                row.last_seen_at = now
                session.add(row)
                session.commit()

    def _delete(self, id_hash: str) -> None:
        with self.db.session() as session:
            session.execute(delete(PortalSession).where(col(PortalSession.id_hash) == id_hash))
            session.commit()

    def end_sessions_of(self, resident_id: str) -> None:
        """Log a resident out everywhere (after erasure: there is nothing left to show)."""
        with self.db.session() as session:
            session.execute(delete(PortalSession).where(col(PortalSession.resident_id) == resident_id))
            session.commit()

    def purge_expired(self, now: datetime) -> int:
        """Delete sessions past their absolute or idle expiry; returns how many."""
        with self.db.session() as session:
            result = session.execute(
                delete(PortalSession).where(
                    (col(PortalSession.expires_at) <= now)
                    | (col(PortalSession.last_seen_at) <= now - self.idle)
                )
            )
            session.commit()
            return int(getattr(result, "rowcount", 0) or 0)
