"""Tables of the audit log, on the shared ``SQLModel.metadata``; created by migration ``0002_audit``
(``0006_audit_principal`` adds one index).

No foreign key points at the vault's ``tenant`` table: the trail must outlive anything done to the
rows it talks about, and ``audit`` knows no other package. Entries, nodes and checkpoints are
append-only (database triggers refuse UPDATE and DELETE); the one mutable row per tenant,
``audit_log_state``, is protected by verification instead: it must equal what the entries give.

Times are integer milliseconds since the epoch (UTC), the same numbers the leaves hold.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Index, LargeBinary, SmallInteger, String, Table, Text, text
from sqlmodel import Field, SQLModel

TENANT_LENGTH = 64
ID_LENGTH = 128


def _text(length: int, *, nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(String(length), nullable=nullable))


class LogState(SQLModel, table=True):
    """Per tenant: the origin that checkpoints name, and the tree as it stands (size, root, right
    edge). Appends lock this row (``SELECT ... FOR UPDATE``) to hand out dense sequence numbers."""

    __tablename__ = "audit_log_state"

    tenant_id: str = Field(sa_column=Column(String(TENANT_LENGTH), primary_key=True))
    origin: str = Field(sa_column=Column(String(255), nullable=False))
    size: int = Field(sa_column=Column(BigInteger(), nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    frontier: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))


class AuditEntry(SQLModel, table=True):
    """One leaf: its bytes exactly as hashed, and search columns copied from them."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_time", "tenant_id", "time_ms"),
        Index("ix_audit_entry_subject", "tenant_id", "data_subject_id"),
        Index("ix_audit_entry_actor", "tenant_id", "actor_id"),
        Index("ix_audit_entry_department", "tenant_id", "department", "time_ms"),
        Index("ix_audit_entry_trace", "tenant_id", "trace_id"),
        # The third branch of ``involving`` (migration 0006). Partial: only representatives act
        # on behalf of someone, so most entries stay out of it.
        Index(
            "ix_audit_entry_principal",
            "tenant_id",
            "on_behalf_of",
            "seq",
            sqlite_where=text("on_behalf_of IS NOT NULL"),
            postgresql_where=text("on_behalf_of IS NOT NULL"),
        ),
    )

    tenant_id: str = Field(sa_column=Column(String(TENANT_LENGTH), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    leaf_bytes: bytes = Field(sa_column=Column(LargeBinary(), nullable=False))
    time_ms: int = Field(sa_column=Column(BigInteger(), nullable=False))
    name: str = Field(sa_column=Column(String(100), nullable=False))
    status: str = Field(sa_column=Column(String(8), nullable=False))
    decision: str | None = _text(8)
    actor_type: str = Field(sa_column=Column(String(32), nullable=False))
    actor_id: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    on_behalf_of: str | None = _text(ID_LENGTH)
    data_subject_id: str | None = _text(ID_LENGTH)
    department: str | None = _text(ID_LENGTH)
    client_id: str | None = _text(ID_LENGTH)
    purpose: str | None = _text(ID_LENGTH)
    grant_id: str | None = _text(ID_LENGTH)
    trace_id: str = Field(sa_column=Column(String(32), nullable=False))


class AuditNode(SQLModel, table=True):
    """A completed perfect subtree of level ≥ 1 (leaf hashes live in ``audit_entry``)."""

    __tablename__ = "audit_node"

    tenant_id: str = Field(sa_column=Column(String(TENANT_LENGTH), primary_key=True))
    level: int = Field(sa_column=Column(SmallInteger(), primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditCheckpoint(SQLModel, table=True):
    """A signed tree head. ``jws`` is the evidence; the other columns repeat its payload for queries."""

    __tablename__ = "audit_checkpoint"

    tenant_id: str = Field(sa_column=Column(String(TENANT_LENGTH), primary_key=True))
    tree_size: int = Field(sa_column=Column(BigInteger(), primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    timestamp_ms: int = Field(sa_column=Column(BigInteger(), nullable=False))
    kid: str = Field(sa_column=Column(String(ID_LENGTH), nullable=False))
    jws: str = Field(sa_column=Column(Text(), nullable=False))


def table(model: type[SQLModel]) -> Table:
    """The Core table of a model: the hot path uses Core statements, not the ORM unit of work."""
    result = model.__table__  # type: ignore[attr-defined]
    assert isinstance(result, Table)
    return result


STATE = table(LogState)
ENTRY = table(AuditEntry)
NODE = table(AuditNode)
CHECKPOINT = table(AuditCheckpoint)
