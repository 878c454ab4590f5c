"""Tables of the consent engine. Every row carries its tenant.

Nothing the OAuth server needs between two requests lives in process memory: replayed assertion
ids, pending requests, poll times and grants are rows here, so any node of a multi-node deployment
answers any request. The schema is made only by ``migrations/versions/0003_consent.py``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ColumnElement, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel, col

from vault.models import utc_column


class Department(SQLModel, table=True):
    __tablename__ = "department"
    __table_args__ = (UniqueConstraint("tenant_id", "code", name="uq_department_code"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    code: str = Field(max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = utc_column()


class Client(SQLModel, table=True):
    """An OAuth client of one department. Secrets are kept only as a hash; keys only public."""

    __tablename__ = "consent_client"
    __table_args__ = (Index("ix_consent_client_tenant", "tenant_id", "department_id"),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    department_id: str = Field(foreign_key="department.id", max_length=32)
    name: str = Field(max_length=200)
    auth_method: str = Field(max_length=32)  # private_key_jwt | client_secret_basic
    secret_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32), nullable=True))
    jwks: str | None = None  # the registered public JWKS (JSON text)
    jwks_uri: str | None = Field(default=None, max_length=2000)
    dpop_bound: bool = False  # dpop_bound_access_tokens (RFC 9449 §5.2)
    created_at: datetime = utc_column()
    disabled_at: datetime | None = utc_column(nullable=True)


class Purpose(SQLModel, table=True):
    """A processing activity of the tenant's register (GDPR art. 30)."""

    __tablename__ = "consent_purpose"

    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=32)
    code: str = Field(primary_key=True, max_length=64)
    description_nl: str = Field(max_length=2000)
    description_en: str = Field(max_length=2000)
    legal_basis: str = Field(max_length=32)  # GDPR art. 6(1) a-f, see consent.schemas.LEGAL_BASES
    statute: str | None = Field(default=None, max_length=500)
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    writable_categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    max_days: int
    created_at: datetime = utc_column()


class ConsentRequest(SQLModel, table=True):
    """A department's backchannel request (CIBA poll mode) for one resident.

    ``resident_id`` is empty when the BSN named no resident: the department gets the same answers as
    for a known one (no enumeration), but nobody can ever approve it.
    """

    __tablename__ = "consent_request"
    # The resident's inbox: newest first, keyset-paginated.
    __table_args__ = (Index("ix_consent_request_resident", "tenant_id", "resident_id", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    client_id: str = Field(foreign_key="consent_client.id", max_length=64)
    department_id: str = Field(foreign_key="department.id", max_length=32)
    resident_id: str | None = Field(default=None, foreign_key="resident.id", max_length=32)
    auth_req_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False, unique=True))
    purpose_code: str = Field(max_length=64)
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    duration_days: int
    binding_message: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=16)  # pending | approved | denied | expired
    interval: int
    last_polled_at: datetime | None = utc_column(nullable=True)
    expires_at: datetime = utc_column()
    created_at: datetime = utc_column()
    decided_at: datetime | None = utc_column(nullable=True)
    token_issued_at: datetime | None = utc_column(nullable=True)


class Grant(SQLModel, table=True):
    """The resident's decision in force. Department code, purpose and legal basis are copied in at
    approval: they are facts of that decision, and the live check then needs this row only."""

    __tablename__ = "consent_grant"
    __table_args__ = (Index("ix_consent_grant_resident", "tenant_id", "resident_id", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    resident_id: str = Field(foreign_key="resident.id", max_length=32)
    department_id: str = Field(foreign_key="department.id", max_length=32)
    department_code: str = Field(max_length=64)
    client_id: str = Field(foreign_key="consent_client.id", max_length=64)
    request_id: str = Field(foreign_key="consent_request.id", max_length=32, unique=True)
    purpose_code: str = Field(max_length=64)
    legal_basis: str = Field(max_length=32)
    categories: list[str] = Field(sa_column=Column(JSON, nullable=False))
    may_write: list[str] = Field(sa_column=Column(JSON, nullable=False))
    valid_from: datetime = utc_column()
    valid_until: datetime = utc_column()
    revoked_at: datetime | None = utc_column(nullable=True)
    revoked_by: str | None = Field(default=None, max_length=16)  # resident | client
    # SHA-256 of the current refresh token (rotated on every use); empty when refreshing is off.
    refresh_hash: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32), nullable=True))
    # Access tokens issued at or before this moment are refused (RFC 7009 revocation of a refresh token).
    tokens_revoked_before: datetime | None = utc_column(nullable=True)
    created_at: datetime = utc_column()


class UsedAssertion(SQLModel, table=True):
    """The ``jti`` of every accepted client assertion until it expires: a replay is refused."""

    __tablename__ = "consent_used_assertion"

    client_id: str = Field(primary_key=True, max_length=64)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = utc_column(index=True)


class RevokedToken(SQLModel, table=True):
    """An access token revoked before its expiry (RFC 7009); rows can go once ``expires_at`` passed."""

    __tablename__ = "consent_revoked_token"

    jti: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    grant_id: str = Field(foreign_key="consent_grant.id", max_length=32)
    revoked_at: datetime = utc_column()
    expires_at: datetime = utc_column(index=True)


def expired(model: type[UsedAssertion] | type[RevokedToken], now: datetime) -> ColumnElement[bool]:
    """The rows of ``model`` that protect nothing any more: past their ``expires_at``, which their
    writers set to when the assertion, proof or token is refused on its age alone (for an assertion:
    its ``exp`` plus the check's leeway). One rule for whoever deletes them: the clients' and
    tokens' own clean-up on their way, and housekeeping."""
    return col(model.expires_at) < now
