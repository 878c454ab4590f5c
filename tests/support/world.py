"""One way for tests to set up a municipality that departments can ask data of: the tenant, its
departments, the purposes they may ask for, and a client (with a secret) per department.

Tests differ in which purposes and departments they need, not in how these are made: they pass
``PurposeSpec``s (``BIJSTAND``, ``JEUGDHULP``, or ``dataclasses.replace`` of one) and department
codes. Works with ``kluis.wiring.Services`` and with ``consent.services.ConsentServices`` alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sqlmodel import Session

from consent.clients import ClientService
from consent.models import Client
from consent.purposes import PurposeService
from consent.services import DepartmentService
from vault.models import Tenant
from vault.services import Context, VaultService

DEPARTMENT_NAMES = {"inkomen": "Werk en inkomen", "jeugdzorg": "Jeugdzorg"}


@dataclass(frozen=True)
class PurposeSpec:
    code: str
    categories: tuple[str, ...]
    description_nl: str
    description_en: str
    max_days: int
    writable: tuple[str, ...] = ()
    legal_basis: str = "consent"


BIJSTAND = PurposeSpec(
    "bijstand", ("inkomen", "schulden"), "Aanvraag bijstand", "Social assistance application", 90
)
JEUGDHULP = PurposeSpec(
    "jeugdhulp", ("jeugdzorg.dossier",), "Jeugdhulp", "Youth care", 365, writable=("jeugdzorg.dossier",)
)


class Registers(Protocol):
    """What ``municipality`` needs of the services: both service bundles have these."""

    @property
    def departments(self) -> DepartmentService: ...
    @property
    def purposes(self) -> PurposeService: ...
    @property
    def clients(self) -> ClientService: ...


@dataclass
class Municipality:
    tenant: Tenant
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # department -> (id, secret)
    client_rows: dict[str, Client] = field(default_factory=dict)  # department -> the Client row


def municipality(
    session: Session,
    registers: Registers,
    vault: VaultService,
    ctx: Context,
    slug: str,
    *,
    name: str | None = None,
    departments: Iterable[str] = ("inkomen",),
    purposes: Iterable[PurposeSpec] = (BIJSTAND,),
    clients: Iterable[str] | None = None,
) -> Municipality:
    """Create the municipality ``slug`` with ``departments``, ``purposes`` and a secret client for
    each of ``clients`` (default: every department), in ``session`` (the caller commits, or the
    services do)."""
    departments = tuple(departments)
    tenant = vault.create_tenant(session, ctx, slug, name or slug.title())
    for code in departments:
        registers.departments.create(session, ctx, tenant, code, DEPARTMENT_NAMES.get(code, code.title()))
    for purpose in purposes:
        registers.purposes.add(
            session,
            ctx,
            tenant,
            purpose.code,
            description_nl=purpose.description_nl,
            description_en=purpose.description_en,
            legal_basis=purpose.legal_basis,
            categories=purpose.categories,
            writable_categories=purpose.writable,
            max_days=purpose.max_days,
        )
    made = Municipality(tenant)
    for code in departments if clients is None else clients:
        row, secret = registers.clients.create(session, ctx, tenant, code, secret=True)
        assert secret is not None
        made.clients[code] = (row.id, secret)
        made.client_rows[code] = row
    return made
