"""Tables of the consent engine. Every row carries its tenant."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from vault.models import utc_column


class Department(SQLModel, table=True):
    __tablename__ = "department"
    __table_args__ = (UniqueConstraint("tenant_id", "code", name="uq_department_code"),)

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenant.id", max_length=32)
    code: str = Field(max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = utc_column()
