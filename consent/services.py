"""Consent services: departments, and the bundle of every consent service.

The services themselves live in one module per job: ``clients`` (registration, client
authentication), ``purposes`` (the processing-activity register), ``requests`` (consent requests,
decisions, grants), ``tokens`` (the vault's JWTs), ``oauth`` (the authorization server endpoints)
and ``resource`` (bearer tokens to access decisions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import Session, col, select

from audit import tags
from consent.clients import ClientService
from consent.errors import DepartmentNotFoundError, DuplicateDepartmentError, InvalidDepartmentError
from consent.jwks import JwksFetcher
from consent.models import Department
from consent.oauth import OAuthServer
from consent.purposes import PurposeService
from consent.requests import ConsentService
from consent.resource import ResourceGuard
from consent.schemas import OAuthConfig
from consent.tokens import TokenService
from vault.models import Tenant
from vault.services import Context, VaultService, new_id
from vault.signing import SigningKeyService

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


@dataclass
class ConsentServices:
    """Everything ``consent`` offers, built once by the composition root (``kluis.wiring``)."""

    config: OAuthConfig
    departments: DepartmentService
    clients: ClientService
    purposes: PurposeService
    requests: ConsentService
    tokens: TokenService
    oauth: OAuthServer
    guard: ResourceGuard


def build_consent(
    vault: VaultService,
    signing: SigningKeyService,
    config: OAuthConfig,
    *,
    departments: DepartmentService | None = None,
    jwks_fetcher: JwksFetcher | None = None,
) -> ConsentServices:
    tokens = TokenService(signing, config)
    requests = ConsentService(vault, config)
    oauth = OAuthServer(vault, tokens, requests, config)
    return ConsentServices(
        config=config,
        departments=departments or DepartmentService(vault),
        clients=ClientService(config, jwks_fetcher),
        purposes=PurposeService(),
        requests=requests,
        tokens=tokens,
        oauth=oauth,
        guard=oauth.guard,
    )
