"""Values the vault hands out and accepts: frozen, small, free of ORM state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit.schemas import Actor


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """The access decision the vault accepts for department reads and writes.

    ``consent`` produces it from a verified token and the live grant in the database; the vault
    knows nothing of OAuth. The resident always comes from here, never from a URL.
    """

    tenant_id: str
    resident_id: str
    grant_id: str
    client_id: str
    department: str
    categories: frozenset[str]
    purpose: str
    legal_basis: str
    valid_until: datetime
    may_write: frozenset[str] = frozenset()
    may_read_history: bool = True
    token_hash: str | None = None  # a hash of the token id, for the audit entry (never the token)
    # RFC 9449: the JWK thumbprint the access token is bound to (``cnf.jkt``); a DPoP proof signed
    # by that key must accompany every request when set.
    dpop_jkt: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(type="client", id=self.client_id)

    def covers(self, category: str, now: datetime) -> str | None:
        """``None`` when reading ``category`` is allowed at ``now``, else the denial reason code."""
        if now >= self.valid_until:
            return "grant_expired"
        if category not in self.categories:
            return "category_not_granted"
        return None


@dataclass(frozen=True, slots=True)
class RecordSummary:
    category: str
    version: int
    updated_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class RecordContent:
    category: str
    version: int
    updated_at: datetime
    source: str
    data: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "source": self.source,
            "data": self.data,
        }
