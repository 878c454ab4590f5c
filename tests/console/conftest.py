"""Two municipalities with an audit trail, a real Kluis over loopback, and privacy officers.

The trail is written through the audit package itself (``audit.services.append``), as the vault and
the consent engine write it: the console only ever reads it. Each municipality gets ordinary reads
in office hours plus a few patterns the anomaly rules must find; municipality B's entries carry
markers (``client-b-…``, ``purpose-b``) that must never show up for an officer of A.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import werkzeug.serving

from audit import services as audit_log
from audit import tags
from audit.schemas import Actor, AuditEvent, TraceContext
from kluis.app import sign_pending
from kluis.console.schemas import ROLE
from kluis.settings import Settings
from kluis.web.i18n import TIMEZONE
from kluis.wiring import Services, build_services, initialise, utcnow
from tests.e2e.conftest import development_settings, free_port, live_server
from tests.portal.conftest import PkceEnforcingProvider, csrf_of
from vault.models import Tenant
from vault.services import Context

TENANT_A = "gemeente-a"
TENANT_B = "gemeente-b"
RESIDENT_A = "999993653"  # fictitious BSNs that pass the 11-proef
CHILD_A = "999990032"
RESIDENT_B = "111222333"
NIGHT_CLIENT = "night"  # the department code of municipality A's client that reads at night


def operator(now: datetime | None = None) -> Context:
    return Context(actor=Actor(type="operator", id="cli:test"), trace=TraceContext.new(), now=now or utcnow())


@dataclass
class Municipality:
    tenant: Tenant
    clients: dict[str, str] = field(default_factory=dict)  # department code -> client id
    pseudonyms: dict[str, str] = field(default_factory=dict)  # BSN -> audit pseudonym
    marker: str = ""


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """``day`` days ago (0 = today) at a local wall-clock time, in UTC."""
    today = utcnow().astimezone(TIMEZONE).date()
    return datetime.combine(today - timedelta(days=day), time(hour, minute), TIMEZONE).astimezone(
        utcnow().tzinfo
    )


def emit(services: Services, tenant_id: str, name: str, when: datetime, **fields: Any) -> None:
    """Append one audit entry as the vault or the consent engine would, and commit."""
    actor = fields.pop("actor", None) or Actor(type="client", id=fields.get("client_id") or "system")
    trace = fields.pop("trace", None) or TraceContext.new()
    with services.db.session() as session:
        audit_log.append(
            session,
            AuditEvent(
                tenant=tenant_id,
                name=name,
                actor=actor,
                trace=trace,
                start_time=when,
                end_time=when,
                **fields,
            ),
        )
        session.commit()


def build_municipality(services: Services, slug: str, name: str, bsns: list[str]) -> Municipality:
    with services.db.session() as session:
        ctx = operator()
        tenant = services.vault.create_tenant(session, ctx, slug, name)
        found = Municipality(tenant=tenant, marker=f"client-{slug[-1]}")
        for code, title in {
            "inkomen": "Werk en inkomen",
            "jeugdzorg": "Jeugdzorg",
            NIGHT_CLIENT: "Nachtdienst",
        }.items():
            services.departments.create(session, ctx, tenant, code, title)
            client, _secret = services.clients.create(
                session, ctx, tenant, code, secret=True, name=f"App {title} {slug[-1].upper()}"
            )
            found.clients[code] = client.id
        services.purposes.add(
            session,
            ctx,
            tenant,
            "bijstand",
            description_nl="Aanvraag bijstand",
            description_en="Social assistance application",
            legal_basis="consent",
            categories=["inkomen"],
            max_days=90,
        )
        services.purposes.add(
            session,
            ctx,
            tenant,
            "jeugdhulp",
            description_nl="Toewijzing jeugdhulp",
            description_en="Youth care allocation",
            legal_basis="consent",
            categories=["jeugdzorg.dossier"],
            max_days=365,
        )
        for bsn in bsns:
            resident = services.vault.add_resident(session, ctx, tenant, bsn)
            found.pseudonyms[bsn] = resident.audit_pseudonym
    return found


def read(
    services: Services,
    town: Municipality,
    when: datetime,
    *,
    department: str = "inkomen",
    subject: str,
    category: str = "inkomen",
    decision: str = "allow",
    grant: str | None = None,
    purpose: str = "bijstand",
    trace: TraceContext | None = None,
) -> None:
    client = town.clients[department]
    emit(
        services,
        town.tenant.id,
        tags.RECORD_READ,
        when,
        client_id=client,
        department=department,
        data_subject_id=subject,
        categories=(category,),
        decision=decision,
        reason="grant_expired" if decision == "deny" else None,
        grant_id=grant or f"grant-{town.marker}",
        processing_activity_id=purpose,
        legal_basis="consent",
        trace=trace,
    )


def trail(services: Services, town: Municipality, subject: str, child: str | None) -> None:
    """Two weeks of ordinary reads plus the patterns of the anomaly rules."""
    inkomen = town.clients["inkomen"]
    approved = local(13, 9)
    emit(
        services,
        town.tenant.id,
        tags.REQUEST_CREATED,
        approved - timedelta(minutes=5),
        client_id=inkomen,
        department="inkomen",
        data_subject_id=subject,
        categories=("inkomen",),
        processing_activity_id="bijstand",
        legal_basis="consent",
    )
    emit(
        services,
        town.tenant.id,
        tags.REQUEST_APPROVED,
        approved,
        actor=Actor(type="resident", id=subject),
        client_id=inkomen,
        department="inkomen",
        data_subject_id=subject,
        categories=("inkomen",),
        processing_activity_id="bijstand",
        legal_basis="consent",
        grant_id=f"grant-{town.marker}",
        decision="allow",
        details={"valid_until": local(1, 12).isoformat()},
    )
    for day in range(12, 0, -1):
        trace = TraceContext.new()
        read(services, town, local(day, 10), subject=subject, trace=trace)
        read(services, town, local(day, 10, 1), subject=subject, trace=trace, category="inkomen")
        read(services, town, local(day, 14, 30), subject=subject)
    # Reads just before the grant's expiry (yesterday 12:00), a refused one just after.
    read(services, town, local(1, 11, 55), subject=subject)
    read(services, town, local(1, 12, 5), subject=subject, decision="deny")
    # A read at night, by another client.
    read(
        services,
        town,
        local(2, 23, 30),
        department=NIGHT_CLIENT,
        subject=subject,
        grant=f"grant-night-{town.marker}",
    )
    # A youth care file read without any request for it.
    if child is not None:
        read(
            services,
            town,
            local(3, 11),
            department="jeugdzorg",
            subject=child,
            category="jeugdzorg.dossier",
            purpose="jeugdhulp",
            grant=f"grant-jeugd-{town.marker}",
        )


@dataclass
class ConsoleServer:
    base_url: str
    settings: Settings
    services: Services
    a: Municipality
    b: Municipality
    provider: PkceEnforcingProvider
    issuer: str

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=30, **kwargs)

    def officer_token(self, town: Municipality, subject: str = "api-officer") -> str:
        with self.services.db.session() as session:
            return self.services.oauth.issue_user_token(
                session, operator(), role="privacy_officer", tenant_id=town.tenant.id, subject=subject
            )

    def entries(self, town: Municipality, name: str | None = None) -> list[AuditEvent]:
        from audit.schemas import AuditQuery

        with self.services.db.read_session() as session:
            page = audit_log.search(session, town.tenant.id, AuditQuery(name=name), limit=500)
        return [item.event for item in page.entries]


@pytest.fixture(scope="session")
def officer_idp() -> Iterator[tuple[str, PkceEnforcingProvider]]:
    """An OpenID Provider with a privacy officer of municipality A and an account without the role."""
    with warnings.catch_warnings():
        import authlib.deprecate

        warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
        import oidc_provider_mock  # type: ignore[import-untyped]
    users = [
        oidc_provider_mock.User(sub="fg-anna", claims={"roles": [ROLE], "gemeente": TENANT_A}),
        oidc_provider_mock.User(sub="clerk-bob", claims={"roles": ["clerk"], "gemeente": TENANT_A}),
        oidc_provider_mock.User(sub="fg-elsewhere", claims={"roles": [ROLE], "gemeente": "gemeente-x"}),
    ]
    provider = PkceEnforcingProvider(oidc_provider_mock.app(user_claims=users))
    wsgi = werkzeug.serving.make_server("127.0.0.1", 0, provider, threaded=True)
    thread = threading.Thread(target=wsgi.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{wsgi.server_port}", provider
    finally:
        wsgi.shutdown()
        thread.join(5)
        wsgi.server_close()


@pytest.fixture(scope="session")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, officer_idp: tuple[str, PkceEnforcingProvider]
) -> Iterator[ConsoleServer]:
    data_dir: Path = tmp_path_factory.mktemp("console")
    settings = development_settings(
        data_dir,
        free_port(),
        portal_tenant=TENANT_A,
        oidc_issuer=officer_idp[0],
        oidc_client_id="kluis-console",
        oidc_client_secret="test-secret",
        oidc_tenant_claim="gemeente",
        checkpoint_interval_seconds=0,
        login_rate_limit_per_minute=100_000,  # every test logs in from 127.0.0.1
    )
    services = build_services(settings)
    initialise(services)
    a = build_municipality(services, TENANT_A, "Gemeente A", [RESIDENT_A, CHILD_A])
    b = build_municipality(services, TENANT_B, "Gemeente B", [RESIDENT_B])
    trail(services, a, a.pseudonyms[RESIDENT_A], a.pseudonyms[CHILD_A])
    trail(services, b, b.pseudonyms[RESIDENT_B], None)
    sign_pending(services)
    with live_server(settings, services) as base:
        yield ConsoleServer(base, settings, services, a, b, officer_idp[1], officer_idp[0])


@pytest.fixture
def clients(console_server: ConsoleServer) -> Iterator[list[httpx.Client]]:
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def officer_login(
    server: ConsoleServer, clients: list[httpx.Client], town: Municipality, name: str = "test-fg"
) -> httpx.Client:
    """A client logged in as privacy officer of ``town`` through the test login."""
    client = server.client()
    clients.append(client)
    page = client.get("/fg/inloggen/test")
    assert page.status_code == 200
    answer = client.post(
        "/fg/inloggen/test", data={"tenant": town.tenant.slug, "name": name, "csrf_token": csrf_of(page.text)}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/fg/overzicht", answer.text
    return client


def csrf(client: httpx.Client, path: str) -> str:
    return csrf_of(client.get(path).text)


ENTRY_LINK = re.compile(r'href="/fg/logregels/(\d+)"')
