"""The FastAPI glue in ``kluis/api/auth.py``: status codes, challenges, principals, audit of refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx
import pytest
from fastapi import FastAPI

from kluis.api import problems
from kluis.api.auth import PrivacyOfficerDep, ResidentDep
from kluis.api.dpop import AccessDep
from kluis.settings import Settings
from kluis.wiring import Services, build_services, initialise, utcnow
from vault.models import Tenant


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        env="development", data_dir=tmp_path / "data", issuer="http://127.0.0.1:9", database_url=None
    )
    built = build_services(settings)
    initialise(built)
    yield built
    built.close()


@pytest.fixture
def tenant(services: Services) -> Tenant:
    from audit.schemas import Actor, TraceContext
    from vault.services import Context

    ctx = Context(actor=Actor(type="operator", id="t"), trace=TraceContext.new(), now=utcnow())
    with services.db.session() as s:
        return services.vault.create_tenant(s, ctx, "dep-town", "Dep Town")


class Http:
    """Requests straight into the ASGI app (no server, no starlette TestClient)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.get(path, headers=headers or {})

        return asyncio.run(call())


@pytest.fixture
def http(services: Services) -> Http:
    app = FastAPI()
    app.state.services = services
    problems.install(app)

    @app.get("/resident")
    def resident(principal: ResidentDep) -> dict[str, str]:
        return {"tenant": principal.tenant_id, "resident": principal.resident_id}

    @app.get("/officer")
    def officer(principal: PrivacyOfficerDep) -> dict[str, str]:
        return {"tenant": principal.tenant_id, "subject": principal.subject}

    @app.get("/records")
    def records(access: AccessDep) -> dict[str, str]:
        return {"grant": access.grant.grant_id}

    return Http(app)


def user_token(
    services: Services, tenant: Tenant, role: Literal["resident", "privacy_officer"], subject: str
) -> str:
    with services.db.session() as s:
        token = services.oauth.tokens.issue_user_token(
            s,
            role=role,
            tenant_id=tenant.id,
            subject=subject,
            now=utcnow(),
        )
        s.commit()
    return token


def test_principals(http: Http, services: Services, tenant: Tenant):
    resident = user_token(services, tenant, "resident", "r" * 32)
    officer = user_token(services, tenant, "privacy_officer", "fg")
    answer = http.get("/resident", headers={"Authorization": f"Bearer {resident}"})
    assert answer.json() == {"tenant": tenant.id, "resident": "r" * 32}
    assert http.get("/officer", headers={"Authorization": f"bearer {officer}"}).json()["subject"] == "fg"
    refused = http.get("/officer", headers={"Authorization": f"Bearer {resident}"})
    assert (
        refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    )
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer  "])
def test_missing_tokens(http: Http, header):
    headers = {"Authorization": header} if header is not None else {}
    for path in ("/resident", "/officer", "/records"):
        answer = http.get(path, headers=headers)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer realm="kluis"'
        assert answer.json()["type"] == "urn:kluis:problem:invalid-token"


def test_garbage_access_tokens_are_401_not_500(http: Http):
    for token in ("x", "a.b.c", "e30.e30.", "x" * 10_000):
        answer = http.get("/records", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401
