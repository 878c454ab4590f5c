"""Tables of the vault. Every table holding tenant data carries ``tenant_id``; every query filters on it.

The schema itself is created only by the Alembic migrations in ``migrations/``; these classes must
match them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, LargeBinary, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as UTC and always come back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_column(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UtcDateTime(), nullable=nullable, index=index))


class Tenant(SQLModel, table=True):
    __tablename__ = "tenant"

    id: str = Field(primary_key=True, max_length=32)
    slug: str = Field(unique=True, max_length=63)
    name: str = Field(max_length=200)
    current_kek_version: int = 1
    created_at: datetime = utc_column()


class KeyVersion(SQLModel, table=True):
    """A key-encryption key version of a tenant (the key material lives in the key provider)."""

    __tablename__ = "key_version"

    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=32)
    version: int = Field(primary_key=True)
    provider: str = Field(max_length=32)
    created_at: datetime = utc_column()
    retired_at: datetime | None = utc_column(nullable=True)


class Category(SQLModel, table=True):
    __tablename__ = "category"

    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=32)
    code: str = Field(primary_key=True, max_length=64)
    title: str = Field(max_length=200)
    json_schema: str = Field(sa_type=Text)  # the JSON Schema (draft 2020-12) as text
    special: bool = False  # special categories (GDPR art. 9, youth care) get extra scrutiny
    created_at: datetime = utc_column()


class Resident(SQLModel, table=True):
    """A resident. The BSN exists only encrypted (with the resident's own data key) and as a keyed
    pseudonym for look-ups; erasure clears both and destroys the data key."""

    __tablename__ = "resident"
    __table_args__ = (
        UniqueConstraint("tenant_id", "bsn_pseudonym", name="uq_resident_bsn"),
        Index("ix_resident_kek", "tenant_id", "kek_version"),
    )

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=32)
    bsn_pseudonym: bytes | None = Field(default=None, sa_column=Column(LargeBinary(32), nullable=True))
    bsn_ciphertext: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    wrapped_data_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    kek_version: int | None = None
    # A random pseudonym for the audit log only: never the BSN, never the id the API uses.
    audit_pseudonym: str = Field(max_length=32, index=True)
    created_at: datetime = utc_column()
    erased_at: datetime | None = utc_column(nullable=True)


class Record(SQLModel, table=True):
    """One document of one category for one resident; its content lives in ``RecordVersion``."""

    __tablename__ = "record"
    __table_args__ = (UniqueConstraint("tenant_id", "resident_id", "category", name="uq_record"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    resident_id: str = Field(foreign_key="resident.id", max_length=32)
    category: str = Field(max_length=64)
    current_version: int
    created_at: datetime = utc_column()
    updated_at: datetime = utc_column()


class RecordVersion(SQLModel, table=True):
    __tablename__ = "record_version"

    record_id: str = Field(foreign_key="record.id", primary_key=True, max_length=32)
    version: int = Field(primary_key=True)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    source: str = Field(max_length=64)
    created_at: datetime = utc_column()
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class SigningKey(SQLModel, table=True):
    """A deployment-wide signing key (access tokens, audit checkpoints); public halves stay published
    forever. By default the private half is generated in software and stored here wrapped by the
    system KEK of the key provider (``kek_version`` 1). With ``KLUIS_PKCS11_SIGNING_KEYS`` it is a
    non-extractable object in the HSM and never stored here: ``wrapped_private`` holds only a
    reference to it (``vault.signing.STORE_REFERENCE`` + its label) and ``kek_version`` is 0."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    purpose: str = Field(max_length=32, index=True)  # "token" | "checkpoint"
    alg: str = Field(max_length=16)
    public_jwk: str = Field(sa_type=Text)
    wrapped_private: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_version: int
    created_at: datetime = utc_column()
    retired_at: datetime | None = utc_column(nullable=True)
