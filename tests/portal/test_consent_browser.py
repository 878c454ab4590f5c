"""Acceptance: a department asks over the real OAuth API, the resident decides in a real browser,
and the department's reads follow the decision at once (approve, revoke, erase)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.portal.conftest import DECIDER, LiveServer, dev_login, operator

pytestmark = pytest.mark.browser
CIBA = "urn:openid:params:grant-type:ciba"


@pytest.fixture(scope="module")
def department(server: LiveServer) -> tuple[str, str]:
    """A client of Afdeling Jeugdzorg (client_secret_basic: development only) and a purpose."""
    services = server.services
    with services.db.session() as session:
        tenant = services.vault.tenant(session, "demodam")
        services.purposes.add(
            session,
            operator(),
            tenant,
            "jeugdhulp.toewijzing",
            description_nl="toewijzing jeugdhulp",
            description_en="allocating youth care",
            legal_basis="consent",
            categories=["inkomen"],
            max_days=90,
        )
        client, secret = services.clients.create(session, operator(), tenant, "jeugdzorg", secret=True)
        assert secret is not None
        return client.id, secret


def ask(server: LiveServer, department: tuple[str, str]) -> str:
    details = [
        {
            "type": "kluis:records",
            "categories": ["inkomen"],
            "purpose": "jeugdhulp.toewijzing",
            "duration_days": 30,
        }
    ]
    with httpx.Client(base_url=server.base_url, auth=department, timeout=10) as api:
        answer = api.post(
            "/oauth/bc-authorize", data={"login_hint": DECIDER, "authorization_details": json.dumps(details)}
        )
    assert answer.status_code == 200, answer.text
    auth_req_id: str = answer.json()["auth_req_id"]
    return auth_req_id


def token(server: LiveServer, department: tuple[str, str], auth_req_id: str) -> str:
    with httpx.Client(base_url=server.base_url, auth=department, timeout=10) as api:
        for _ in range(10):
            answer = api.post("/oauth/token", data={"grant_type": CIBA, "auth_req_id": auth_req_id})
            if answer.status_code == 200:
                access: str = answer.json()["access_token"]
                return access
            assert answer.json()["error"] in ("authorization_pending", "slow_down"), answer.text
            time.sleep(server.settings.poll_interval_seconds)
    raise AssertionError("no token")


def read(server: LiveServer, access_token: str) -> int:
    with httpx.Client(base_url=server.base_url, timeout=10) as api:
        return api.get(
            "/api/v1/records/inkomen", headers={"authorization": f"Bearer {access_token}"}
        ).status_code


def approve_in_browser(page: Any) -> None:
    page.goto("/portaal/verzoeken")
    page.get_by_role("link", name="Afdeling Jeugdzorg vraagt om uw gegevens").first.click()
    assert page.get_by_text("toewijzing jeugdhulp").first.is_visible()
    page.get_by_role("button", name="Ja, dit sta ik toe").click()
    page.wait_for_url("**/portaal/toestemmingen?klaar=approved")


def test_approve_see_grant_revoke_then_erase(
    page_for: Any, server: LiveServer, department: tuple[str, str]
) -> None:
    auth_req_id = ask(server, department)
    page = page_for()
    dev_login(page, DECIDER)
    approve_in_browser(page)
    assert page.get_by_role("heading", name="Afdeling Jeugdzorg").is_visible()
    first = token(server, department, auth_req_id)
    assert read(server, first) == 200
    # Revoke, with a confirmation step; the very next read is refused.
    page.get_by_role("link", name="Deze toestemming stoppen").first.click()
    page.get_by_role("button", name="Ja, stop deze toestemming").click()
    page.wait_for_url("**/portaal/toestemmingen?klaar=revoked")
    assert read(server, first) in (401, 403)
    # A new permission, then erasure: the department's next read is refused too.
    auth_req_id = ask(server, department)
    approve_in_browser(page)
    second = token(server, department, auth_req_id)
    assert read(server, second) == 200
    page.goto("/portaal/wissen")
    page.get_by_label("Ik begrijp dat al mijn gegevens voorgoed worden vernietigd.").check()
    page.get_by_role("button", name="Verder").click()
    page.get_by_role("button", name="Ja, wis mijn kluis nu").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Uw kluis is gewist"
    assert read(server, second) in (401, 403)
