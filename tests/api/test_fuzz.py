"""Schemathesis against the published OpenAPI document, over real HTTP on loopback.

Every operation is fuzzed with positive and negative data, with all of schemathesis's checks
(server errors, status codes and content types as documented, response schemas, negative data
rejected, ignored authentication...). A bounded number of examples keeps it in the test suite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from kluis.wiring import build_services, initialise
from tests.e2e.conftest import development_settings, free_port, live_server
from tests.e2e.test_consent_flow import CIBA, operator
from tests.support.world import BIJSTAND, municipality

BSN = "999993653"


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings_ = development_settings(
        tmp_path_factory.mktemp("fuzz"), free_port(), poll_interval_seconds=1, checkpoint_interval_seconds=0
    )
    services = build_services(settings_)
    initialise(services)
    with services.db.session() as s:
        fuzz = replace(BIJSTAND, categories=("inkomen",), writable=("inkomen",), max_days=30)
        town = municipality(s, services, services.vault, operator(), "fuzz", purposes=[fuzz])
        tenant = town.tenant
        client_id, secret = town.clients["inkomen"]
        resident = services.vault.add_resident(s, operator(), tenant, BSN)
        services.vault.put_record(s, operator(), resident, "inkomen", {"maandinkomen": 1.0}, source="fuzz")
        resident_token = services.oauth.issue_user_token(
            s, operator(), role="resident", tenant_id=tenant.id, subject=resident.id, lifetime=3600
        )
        officer_token = services.oauth.issue_user_token(
            s, operator(), role="privacy_officer", tenant_id=tenant.id, subject="fuzz-officer", lifetime=3600
        )
    with live_server(settings_, services) as base:
        auth = (client_id, secret)
        details = json.dumps([{"type": "kluis:records", "categories": ["inkomen"], "purpose": "bijstand"}])
        asked = httpx.post(
            base + "/oauth/bc-authorize",
            auth=auth,
            data={"login_hint": BSN, "authorization_details": details},
        )
        me = {"Authorization": f"Bearer {resident_token}"}
        [item] = httpx.get(base + "/api/v1/me/consent-requests", headers=me).json()["items"]
        httpx.post(
            f"{base}/api/v1/me/consent-requests/{item['id']}/approve",
            headers=me,
            json={"allow_write": ["inkomen"]},
        ).raise_for_status()
        token = httpx.post(
            base + "/oauth/token",
            auth=auth,
            data={"grant_type": CIBA, "auth_req_id": asked.json()["auth_req_id"]},
        ).json()["access_token"]
        yield {
            "base": base,
            "department": token,
            "resident": resident_token,
            "officer": officer_token,
            "client": auth,
        }


@pytest.fixture(scope="module")
def api_schema(fuzz_target: dict[str, Any]) -> Any:
    schema = schemathesis.openapi.from_url(fuzz_target["base"] + "/api/v1/openapi.json")
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
    # Some rules cannot be written in JSON Schema: an opaque cursor must be one we handed out, a
    # consistency proof needs first <= second <= the log size. Such schema-valid requests get a 400
    # problem (documented), so the positive-data check accepts 400 besides its defaults.
    schema.config.checks.positive_data_acceptance.expected_statuses = [
        "2xx",
        "3xx",
        "400",
        "401",
        "403",
        "404",
        "409",
        "429",
    ]
    return schema


def headers_for(path: str, target: dict[str, Any]) -> dict[str, str]:
    if path.startswith("/api/v1/records"):
        return {"Authorization": f"Bearer {target['department']}"}
    if path.startswith("/api/v1/me"):
        return {"Authorization": f"Bearer {target['resident']}"}
    if path.startswith("/api/v1/audit"):
        return {"Authorization": f"Bearer {target['officer']}"}
    return {}


def test_the_api_keeps_its_published_contract(api_schema: Any, fuzz_target: dict[str, Any]) -> None:
    # schemathesis's own pytest plugin does not run on this pytest; hypothesis drives its strategies.
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    tested = [op for op in operations if not op.path.startswith(("/oauth/", "/.well-known/"))]
    assert len(tested) >= 20
    for operation in tested:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=8,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def fuzz(case: Any) -> None:
                case.call_and_validate(
                    headers={**headers_for(case.path, fuzz_target), **(case.headers or {})}
                )

            try:
                fuzz()
            except Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # schemathesis raises a BaseExceptionGroup of failures
                first = str(exc).splitlines()[:12]
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode.value}]: " + " | ".join(first)
                )
    assert not failures, "\n\n".join(failures)
