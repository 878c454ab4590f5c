"""``POST /api/v1/records/{category}/refresh`` on SQLite and PostgreSQL: a department whose grant
covers a category and allows writing it refreshes its resident's record from the stand-in BRP
(loopback HTTP). Refusals and failures are RFC 9457 problems, never a stack trace, and audited."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from audit import tags
from consent.schemas import AuthenticatedClient, BackchannelRequest, RecordsDetail, ResidentPrincipal
from kluis.app import create_app
from kluis.wiring import utcnow
from tests.imports.conftest import GEZAG_BSN, Kluis, operator
from tests.support.brp_standin import StandinServer
from vault.models import Resident

CIBA = "urn:openid:params:grant-type:ciba"
REFRESH = "/api/v1/records/brp.persoon/refresh"


@dataclass
class Api:
    app: FastAPI
    kluis: Kluis
    client: AuthenticatedClient
    residents: dict[str, Resident]

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                return await http.request(method, path, headers=headers, json=body)

        return asyncio.run(go())

    def token(
        self, bsn: str, purpose: str, categories: tuple[str, ...], *, write: tuple[str, ...] = ()
    ) -> str:
        """The department asks, the resident approves (allowing ``write``), the department polls."""
        services, ctx = self.kluis.services, operator()
        request = BackchannelRequest(
            login_hint=bsn, detail=RecordsDetail(categories=categories, purpose=purpose)
        )
        with services.db.session() as s:
            auth_req_id = services.consent.backchannel(s, ctx, self.client, request).auth_req_id
        principal = ResidentPrincipal(self.kluis.tenant.id, self.residents[bsn].id)
        with services.db.session() as s:
            [pending] = services.consent.requests(s, principal, utcnow(), status="pending").items
            services.consent.approve(s, operator(), principal, pending.id, allow_write=write)
        with services.db.session() as s:
            form = {"grant_type": [CIBA], "auth_req_id": [auth_req_id]}
            return str(services.oauth.token(s, operator(), self.client, form).access_token)


@pytest.fixture
def api(kluis: Kluis, unknown_bsn: str) -> Iterator[Api]:
    services, tenant = kluis.services, kluis.tenant
    with services.db.session() as s:
        department = services.departments.create(s, operator(), tenant, "burgerzaken", "Burgerzaken")
        for code, categories, writable in (
            ("basisgegevens", ["brp.persoon"], ["brp.persoon"]),
            ("inzage", ["brp.persoon"], []),
            ("bijstand", ["brp.persoon", "inkomen"], ["brp.persoon", "inkomen"]),
        ):
            services.purposes.add(
                s,
                operator(),
                tenant,
                code,
                description_nl=code,
                description_en=code,
                legal_basis="consent",
                categories=categories,
                writable_categories=writable,
                max_days=30,
            )
        row, _secret = services.clients.create(s, operator(), tenant, "burgerzaken", secret=True)
        residents = {
            b: services.vault.add_resident(s, operator(), tenant, b) for b in (GEZAG_BSN, unknown_bsn)
        }
    client = AuthenticatedClient(
        client_id=row.id,
        tenant_id=tenant.id,
        department_id=department.id,
        department_code="burgerzaken",
        method="client_secret_basic",
        dpop_bound=False,
    )
    yield Api(create_app(services.settings, services), kluis, client, residents)


def assert_problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["type"] == f"urn:kluis:problem:{code}" and body["status"] == status
    assert "Traceback" not in answer.text and "File " not in answer.text
    return body


def test_a_department_refreshes_its_residents_record_where_its_grant_allows_writing(
    api: Api, standin: StandinServer
) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))

    first = api.call("POST", REFRESH, token)
    second = api.call("POST", REFRESH, token)

    assert first.status_code == 200, first.text
    assert {k: first.json()[k] for k in ("category", "version", "source")} == {
        "category": "brp.persoon",
        "version": 1,
        "source": "brp",
    }
    assert second.json()["version"] == 2
    read = api.call("GET", "/api/v1/records/brp.persoon", token)
    assert read.status_code == 200 and read.json()["source"] == "brp"
    assert len(read.json()["data"]["gezag"]) == 3  # the gezag relations came through
    [request, _] = standin.state.recorded("personen")
    assert request.body["burgerservicenummer"] == [GEZAG_BSN]
    entries = api.kluis.audit(tags.RECORD_IMPORTED)
    assert [e["details"] for e in entries] == [
        {"version": 1, "source": "brp"},
        {"version": 2, "source": "brp"},
    ]
    entry = entries[0]
    assert entry["decision"] == "allow" and entry["actor"] == {
        "type": "client",
        "id": api.client.client_id,
        "on_behalf_of": None,
    }
    assert entry["department"] == "burgerzaken" and entry["grant_id"] and entry["legal_basis"] == "consent"
    assert entry["data_subject_id"] == api.residents[GEZAG_BSN].audit_pseudonym
    for answer in (first, second):
        assert GEZAG_BSN not in answer.text


def test_a_grant_that_does_not_allow_writing_is_refused_and_audited(api: Api, standin: StandinServer) -> None:
    token = api.token(GEZAG_BSN, "inzage", ("brp.persoon",))

    answer = api.call("POST", REFRESH, token)

    assert_problem(answer, 403, "access-denied")
    [denied] = api.kluis.audit(tags.RECORD_IMPORTED)
    assert (denied["decision"], denied["reason"]) == ("deny", "write_not_granted")
    assert standin.state.recorded("personen") == []


def test_a_category_outside_the_grant_is_refused(api: Api, standin: StandinServer) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))

    assert_problem(api.call("POST", "/api/v1/records/inkomen/refresh", token), 403, "access-denied")
    assert_problem(api.call("POST", REFRESH, None), 401, "invalid-token")
    [denied] = api.kluis.audit(tags.RECORD_IMPORTED)
    assert denied["reason"] == "category_not_granted"
    assert standin.state.recorded("personen") == []


def test_an_unavailable_source_is_a_503_with_retry_after_and_stores_nothing(
    api: Api, standin: StandinServer
) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))
    standin.state.inject("personen", 503, times=10, retry_after="0")

    answer = api.call("POST", REFRESH, token)

    body = assert_problem(answer, 503, "source-unavailable")
    assert answer.headers["retry-after"] == "30"
    assert body["detail"] == body["title"]  # a 5xx tells the caller nothing more
    [failed] = api.kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["status"], failed["reason"], failed["categories"]) == (
        "error",
        "source_unavailable",
        ["brp.persoon"],
    )
    assert failed["grant_id"] and failed["client_id"] == api.client.client_id
    assert failed["data_subject_id"] == api.residents[GEZAG_BSN].audit_pseudonym
    assert api.kluis.audit(tags.RECORD_IMPORTED) == []


def test_an_invalid_answer_is_a_502(api: Api, standin: StandinServer) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))
    standin.state.tamper(GEZAG_BSN, lambda p: p | {"gezag": [{"type": "Onbekend"}]})

    assert_problem(api.call("POST", REFRESH, token), 502, "invalid-source-answer")
    [failed] = api.kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["details"]["path"]) == ("invalid_answer", "/gezag/0/type")


def test_a_person_the_source_does_not_know_is_a_404(api: Api, unknown_bsn: str) -> None:
    token = api.token(unknown_bsn, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))

    body = assert_problem(api.call("POST", REFRESH, token), 404, "person-not-found")

    assert unknown_bsn not in str(body)
    [failed] = api.kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert failed["reason"] == "person_not_found"


def test_a_category_without_a_configured_source_is_a_404(api: Api, standin: StandinServer) -> None:
    token = api.token(GEZAG_BSN, "bijstand", ("brp.persoon", "inkomen"), write=("inkomen",))

    assert_problem(api.call("POST", "/api/v1/records/inkomen/refresh", token), 404, "no-source")
    [failed] = api.kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert (failed["reason"], failed["categories"], failed["details"]) == (
        "unknown_source",
        ["inkomen"],
        {"source": None},
    )


def test_connectors_that_are_not_configured_are_a_503_without_details(
    api: Api, standin: StandinServer
) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))
    api.kluis.config_file.unlink()

    answer = api.call("POST", REFRESH, token)

    body = assert_problem(answer, 503, "source-not-configured")
    assert str(api.kluis.config_file) not in answer.text and "retry-after" not in answer.headers
    assert body["detail"] == body["title"]
    [failed] = api.kluis.audit(tags.RECORD_IMPORT_FAILED)
    assert failed["reason"] == "config_invalid"


def test_the_refresh_is_documented(api: Api) -> None:
    document = api.call("GET", "/api/v1/openapi.json", None).json()
    operation = document["paths"]["/api/v1/records/{category}/refresh"]["post"]
    assert {"200", "401", "403", "404", "502", "503"} <= set(operation["responses"])


def test_a_department_may_refresh_the_brp_copy_but_never_write_its_own_version(
    api: Api, standin: StandinServer
) -> None:
    token = api.token(GEZAG_BSN, "basisgegevens", ("brp.persoon",), write=("brp.persoon",))
    assert api.call("POST", REFRESH, token).status_code == 200
    current = api.call("GET", "/api/v1/records/brp.persoon", token).json()
    forged = {**current["data"], "naam": {"voornamen": "Nep", "geslachtsnaam": "Persoon"}}
    refused = api.call("PUT", "/api/v1/records/brp.persoon", token, forged)
    assert_problem(refused, 403, "access-denied")
    [entry] = [e for e in api.kluis.audit(tags.RECORD_WRITTEN) if e["reason"] == "category_from_registry"]
    assert entry["decision"] == "deny" and entry["categories"] == ["brp.persoon"]
    after = api.call("GET", "/api/v1/records/brp.persoon", token).json()
    assert after["version"] == current["version"] and after["data"] == current["data"]
