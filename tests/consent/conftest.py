"""Fixtures for the consent engine: a municipality with departments, a purpose register, residents
and clients, built through the services themselves (over the ``db`` fixture: SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import text

from audit import leaf
from audit.schemas import Actor, TraceContext
from consent.schemas import (
    AuthenticatedClient,
    BackchannelRequest,
    OAuthConfig,
    RecordsDetail,
    ResidentPrincipal,
)
from consent.services import ConsentServices, build_consent
from kluis.db import Database
from tests.conftest import Clock
from tests.support.world import BIJSTAND, JEUGDHULP, municipality
from vault.keys import FileKeyProvider
from vault.models import Resident, Tenant
from vault.services import Context, VaultService
from vault.signing import SigningKeyService

ISSUER = "https://kluis.test"
BSN_A = "999993653"
BSN_B = "111222333"
BSN_UNKNOWN = "999990019"


@pytest.fixture
def clock() -> Clock:
    """The real time, settable: client assertions are checked against the wall clock (authlib)."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def config() -> OAuthConfig:
    return OAuthConfig(issuer=ISSUER, base_url=ISSUER, poll_interval=2, request_lifetime=3600)


@pytest.fixture
def keys(tmp_path: Path) -> FileKeyProvider:
    provider = FileKeyProvider(tmp_path / "keys" / "keys.json")
    provider.create_kek("_system", 1)
    return provider


@pytest.fixture
def vault(keys: FileKeyProvider) -> VaultService:
    return VaultService(keys)


@pytest.fixture
def consent(vault: VaultService, keys: FileKeyProvider, config: OAuthConfig) -> ConsentServices:
    return build_consent(vault, SigningKeyService(keys), config)


@pytest.fixture
def ctx(clock: Clock) -> Callable[..., Context]:
    def make(actor: Actor | None = None) -> Context:
        return Context(
            actor=actor or Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=clock()
        )

    return make


def resident_ctx(clock: Clock) -> Context:
    return Context(actor=Actor(type="resident", id="self"), trace=TraceContext.new(), now=clock())


def client_ctx(clock: Clock, client: AuthenticatedClient) -> Context:
    return Context(actor=Actor(type="client", id=client.client_id), trace=TraceContext.new(), now=clock())


def public_jwks(key: jwk.JWK) -> dict[str, Any]:
    return {"keys": [json.loads(key.export_public())]}


@dataclass
class Town:
    """One municipality: departments ``inkomen`` and ``jeugdzorg``, purposes, residents, clients."""

    tenant: Tenant
    residents: dict[str, Resident]
    clients: dict[str, AuthenticatedClient]
    secrets: dict[str, str]
    keys: dict[str, jwk.JWK] = field(default_factory=dict)

    def principal(self, bsn: str = BSN_A) -> ResidentPrincipal:
        return ResidentPrincipal(tenant_id=self.tenant.id, resident_id=self.residents[bsn].id)


@pytest.fixture
def make_town(
    db: Database, vault: VaultService, consent: ConsentServices, ctx: Callable[..., Context]
) -> Callable[[str], Town]:
    def make(slug: str) -> Town:
        with db.session() as s:
            place = municipality(
                s,
                consent,
                vault,
                ctx(),
                slug,
                departments=("inkomen", "jeugdzorg"),
                purposes=(replace(BIJSTAND, writable=("inkomen",)), replace(JEUGDHULP, writable=())),
            )
            tenant = place.tenant
            residents = {bsn: vault.add_resident(s, ctx(), tenant, bsn) for bsn in (BSN_A, BSN_B)}
            secrets = {department: secret for department, (_, secret) in place.clients.items()}
            clients = {
                department: AuthenticatedClient(
                    client_id=row.id,
                    tenant_id=tenant.id,
                    department_id=row.department_id,
                    department_code=department,
                    method="client_secret_basic",
                    dpop_bound=False,
                )
                for department, row in place.client_rows.items()
            }
        return Town(tenant=tenant, residents=residents, clients=clients, secrets=secrets)

    return make


@pytest.fixture
def town(make_town: Callable[[str], Town]) -> Town:
    return make_town("gemeente-a")


def records_request(
    bsn: str = BSN_A,
    categories: tuple[str, ...] = ("inkomen",),
    purpose: str = "bijstand",
    **kwargs: Any,
) -> BackchannelRequest:
    return BackchannelRequest(
        login_hint=bsn, detail=RecordsDetail(categories=categories, purpose=purpose), **kwargs
    )


def audit_rows(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's audit entries in order, as the entry objects that were hashed (``audit.leaf``)."""
    with db.read_session() as s:
        result = s.execute(
            text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t ORDER BY seq"), {"t": tenant_id}
        )
        return [leaf.parse(bytes(row[0])) for row in result]


def audit_names(db: Database, tenant_id: str) -> list[str]:
    return [str(row["name"]) for row in audit_rows(db, tenant_id)]
