"""Tables of the portal: server-side sessions and representatives' mandates.

Created by ``migrations/versions/0004_portal.py`` and ``0008_mandate_acceptance.py``; these classes
must match them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from vault.models import utc_column


class PortalSession(SQLModel, table=True):
    """One browser session. The cookie holds a random id; the table only its SHA-256, so a copy of
    the database does not let anyone take over a session."""

    __tablename__ = "portal_session"

    id_hash: str = Field(primary_key=True, max_length=64)
    tenant_id: str | None = Field(default=None, foreign_key="tenant.id", max_length=32)
    resident_id: str | None = Field(default=None, foreign_key="resident.id", max_length=32)
    # JSON: CSRF token, language, the login flow's state, whom the user acts for. No BSN, no name.
    data: str = Field(default="{}", sa_type=Text)
    created_at: datetime = utc_column()
    last_seen_at: datetime = utc_column()
    expires_at: datetime = utc_column(index=True)


class Mandate(SQLModel, table=True):
    """A resident (principal) lets another resident (representative) act for them, within a scope
    and a period. Parents with gezag need no row: their authority comes from the BRP, live.

    The principal names the representative by BSN; the row keeps only the BSN's pseudonym. It is
    an invitation until the person with that BSN logs in and accepts it (``accepted_at``, and only
    then ``representative_id``): whether anyone with that BSN has a vault is never told to the
    principal (migrations/versions/0008_mandate_acceptance.py)."""

    __tablename__ = "mandate"
    __table_args__ = (Index("ix_mandate_invitation", "tenant_id", "representative_pseudonym"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    principal_id: str = Field(foreign_key="resident.id", index=True, max_length=32)
    representative_id: str | None = Field(default=None, foreign_key="resident.id", index=True, max_length=32)
    # NULL only for a mandate whose representative was erased before invitations existed (stopped).
    representative_pseudonym: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary(32), nullable=True)
    )
    accepted_at: datetime | None = utc_column(nullable=True)
    may_view: bool = True
    may_decide: bool = False
    valid_from: datetime = utc_column()
    valid_until: datetime = utc_column()
    created_at: datetime = utc_column()
    revoked_at: datetime | None = utc_column(nullable=True)
