"""Consent services: departments (clients, purposes, requests and grants build on them)."""

from __future__ import annotations

import re

from sqlmodel import Session, col, select

from audit import tags
from consent.errors import DepartmentNotFoundError, DuplicateDepartmentError, InvalidDepartmentError
from consent.models import Department
from vault.models import Tenant
from vault.services import Context, VaultService, new_id

DEPARTMENT_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class DepartmentService:
    def __init__(self, vault: VaultService) -> None:
        self.vault = vault

    def create(self, session: Session, ctx: Context, tenant: Tenant, code: str, name: str) -> Department:
        if not DEPARTMENT_CODE.match(code):
            raise InvalidDepartmentError("a department code is lower-case letters, digits, '-' and '_'")
        if not name.strip() or len(name) > 200:
            raise InvalidDepartmentError("a department needs a name of at most 200 characters")
        if self.find(session, tenant.id, code) is not None:
            raise DuplicateDepartmentError
        department = Department(
            id=new_id(), tenant_id=tenant.id, code=code, name=name.strip(), created_at=ctx.now
        )
        session.add(department)
        session.flush()
        self.vault.audit(session, ctx, tenant.id, tags.DEPARTMENT_CREATED, details={"department": code})
        session.commit()
        return department

    def find(self, session: Session, tenant_id: str, code: str) -> Department | None:
        return session.exec(
            select(Department).where(Department.tenant_id == tenant_id, Department.code == code)
        ).first()

    def get(self, session: Session, tenant_id: str, code: str) -> Department:
        department = self.find(session, tenant_id, code)
        if department is None:
            raise DepartmentNotFoundError
        return department

    def list(self, session: Session, tenant_id: str) -> list[Department]:
        stmt = select(Department).where(Department.tenant_id == tenant_id).order_by(col(Department.code))
        return list(session.exec(stmt))
