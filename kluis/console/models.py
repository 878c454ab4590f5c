"""Tables of the privacy officer's console: rule settings, findings and their review, verification runs.

Created only by ``migrations/versions/0005_console.py`` (and changed by ``0007``); these classes
must match them. The audit
entries themselves stay in the audit package's tables: these rows only point at them by sequence
number. Nothing here holds a BSN or a name; a finding's key may hold a data subject's opaque audit
pseudonym.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from vault.models import utc_column


class ConsoleRules(SQLModel, table=True):
    """A tenant's anomaly rule settings (``kluis.console.anomalies.RuleSet`` as JSON)."""

    __tablename__ = "console_rules"

    tenant_id: str = Field(foreign_key="tenant.id", primary_key=True, max_length=32)
    settings: str = Field(default="{}", sa_type=Text)
    updated_at: datetime = utc_column()
    updated_by: str = Field(max_length=200)


class ConsoleFinding(SQLModel, table=True):
    """Something an anomaly rule found, with the entries that show it and its review."""

    __tablename__ = "console_finding"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key", name="uq_console_finding_key"),
        Index("ix_console_finding_list", "tenant_id", "status", "first_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    rule: str = Field(max_length=32)
    key: str = Field(max_length=400)
    message: str = Field(max_length=400)  # a message id of the catalogues
    params: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    client_id: str | None = Field(default=None, max_length=128)
    department: str | None = Field(default=None, max_length=128)
    first_at: datetime = utc_column()
    last_at: datetime = utc_column()
    count: int
    sequences: list[int] = Field(sa_column=Column(JSON, nullable=False))
    detected_at: datetime = utc_column()
    updated_at: datetime = utc_column()
    status: str = Field(max_length=16)  # open | reviewed
    reviewed_at: datetime | None = utc_column(nullable=True)
    reviewed_by: str | None = Field(default=None, max_length=200)
    review_note: str | None = Field(default=None, max_length=2000)


class ConsoleVerification(SQLModel, table=True):
    """One verification run of a tenant's log (the button, the API or the scheduled job; a full
    walk, or an incremental one from a signed checkpoint), so that every node shows the latest."""

    __tablename__ = "console_verification"
    __table_args__ = (Index("ix_console_verification_latest", "tenant_id", "started_at"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    trigger: str = Field(max_length=16)  # button | schedule | api
    actor: str = Field(max_length=200)
    started_at: datetime = utc_column()
    finished_at: datetime = utc_column()
    ok: bool
    tree_size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    checkpoints: int
    first_bad_seq: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    problem: str | None = Field(default=None, max_length=200)
    # Where the walk started: 0 for the whole log, else the tree size of the signed checkpoint an
    # incremental walk started from.
    since_size: int = Field(
        default=0, sa_column=Column(BigInteger(), nullable=False, server_default=text("0"))
    )
