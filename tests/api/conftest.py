"""The data API's shared test world: one municipality with a department client, a resident and an
``inkomen`` record, a quiet second municipality, and a live server over loopback (SQLite and
PostgreSQL); and the consent flow that gives a department its token."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kluis.wiring import Services, build_services, initialise
from tests.conftest import postgres_schema
from tests.e2e.conftest import development_settings, free_port, live_server
from tests.e2e.test_consent_flow import CIBA, operator
from tests.support.world import municipality

BSN = "999993653"
INCOME = {"maandinkomen": 2345.0, "werkgever": "Meetlat BV"}


@dataclass
class World:
    base: str
    services: Services
    tenant_id: str
    quiet_tenant_id: str
    resident_id: str
    pseudonym: str
    client: tuple[str, str]  # (client id, secret)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    schemas = ExitStack()
    request.addfinalizer(schemas.close)  # the schema goes also when the set-up below fails
    overrides: dict[str, Any] = {"poll_interval_seconds": 1, "checkpoint_interval_seconds": 0}
    if request.param == "postgres":
        overrides["database_url"] = schemas.enter_context(postgres_schema("metrics_"))
    data_dir: Path = tmp_path_factory.mktemp("metrics")
    settings = development_settings(data_dir, free_port(), **overrides)
    services = build_services(settings)
    initialise(services)
    with services.db.session() as s:
        town = municipality(s, services, services.vault, operator(), "gemeente-meetlat", name="Meetlat")
        tenant = town.tenant
        resident = services.vault.add_resident(s, operator(), tenant, BSN)
        services.vault.put_record(s, operator(), resident, "inkomen", INCOME, source="test")
        quiet = services.vault.create_tenant(s, operator(), "gemeente-stil", "Stil")
    made = World(
        "", services, tenant.id, quiet.id, resident.id, resident.audit_pseudonym, town.clients["inkomen"]
    )
    with live_server(settings, services) as base:
        made.base = base
        yield made


def resident_client(world: World) -> httpx.Client:
    with world.services.db.session() as s:
        token = world.services.oauth.issue_user_token(
            s, operator(), role="resident", tenant_id=world.tenant_id, subject=world.resident_id
        )
    return httpx.Client(base_url=world.base, headers={"Authorization": f"Bearer {token}"})


def department_token(world: World) -> tuple[str, str]:
    """A fresh grant for ``inkomen`` through the real consent flow: (access token, grant id)."""
    details = [{"type": "kluis:records", "categories": ["inkomen"], "purpose": "bijstand"}]
    asked = httpx.post(
        world.base + "/oauth/bc-authorize",
        auth=world.client,
        data={"login_hint": BSN, "authorization_details": json.dumps(details)},
    )
    assert asked.status_code == 200, asked.text
    with resident_client(world) as me:
        [item] = [
            x for x in me.get("/api/v1/me/consent-requests").json()["items"] if x["status"] == "pending"
        ]
        assert me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json={}).status_code == 200
    response = httpx.post(
        world.base + "/oauth/token",
        auth=world.client,
        data={"grant_type": CIBA, "auth_req_id": asked.json()["auth_req_id"]},
    )
    assert response.status_code == 200, response.text
    token = str(response.json()["access_token"])
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return token, str(claims["authorization_details"][0]["grant_id"])
