"""The department data API end to end over real HTTP on loopback, on SQLite and on PostgreSQL.

Allowed reads (with field selection, history and writes within the grant), and every refusal the
issue names — a category outside the grant, after revocation, after expiry, after erasure, another
tenant's token, another department's token, a grant of another resident — each a 403 (or 401)
problem+json with an audit entry, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update
from sqlmodel import col

from audit import leaf
from consent.models import Grant
from consent.tokens import KeyRing
from kluis.api.fastlane import FastLaneApp
from kluis.wiring import build_services, initialise, utcnow
from tests.conftest import postgres_schema
from tests.e2e.conftest import LiveKluis, development_settings, free_port, live_server
from tests.e2e.test_consent_flow import CIBA, operator
from tests.support.world import BIJSTAND, JEUGDHULP, municipality

BSN_A, BSN_B, BSN_C = "999993653", "111222333", "123456782"
INCOME = {"maandinkomen": 2100.0, "werkgever": "Loopback BV", "periode": "2026-10"}


@dataclass
class Setup:
    kluis: LiveKluis
    tenants: dict[str, str]
    clients: dict[str, tuple[str, str]]  # "<slug>/<department>" -> (client id, secret)
    residents: dict[str, str]  # "<slug>/<bsn>" -> resident id
    apps: list[FastLaneApp] = field(default_factory=list)  # the served app


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    schemas = ExitStack()
    request.addfinalizer(schemas.close)  # the schema goes also when the set-up below fails
    overrides: dict[str, Any] = {"poll_interval_seconds": 1}
    if request.param == "postgres":
        overrides["database_url"] = schemas.enter_context(postgres_schema("e2e_"))
    data_dir: Path = tmp_path_factory.mktemp("data-api")
    settings = development_settings(data_dir, free_port(), **overrides)
    services = build_services(settings)
    initialise(services)
    made = Setup(LiveKluis(settings.public_base_url, settings, services), {}, {}, {})
    with services.db.session() as s:
        for slug in ("api-a", "api-b"):
            town = municipality(
                s,
                services,
                services.vault,
                operator(),
                slug,
                name=slug,
                departments=("inkomen", "jeugdzorg"),
                purposes=(BIJSTAND, JEUGDHULP),
            )
            tenant = town.tenant
            made.tenants[slug] = tenant.id
            for code, credentials in town.clients.items():
                made.clients[f"{slug}/{code}"] = credentials
            for n, bsn in enumerate((BSN_A, BSN_B, BSN_C)):
                resident = services.vault.add_resident(s, operator(), tenant, bsn)
                made.residents[f"{slug}/{bsn}"] = resident.id
                services.vault.put_record(
                    s,
                    operator(),
                    resident,
                    "inkomen",
                    {**INCOME, "maandinkomen": 1000.0 + n + (100 if slug == "api-b" else 0)},
                    source="e2e",
                )
                services.vault.put_record(s, operator(), resident, "schulden", {"totaal": 50.0}, source="e2e")
    with live_server(settings, services, made.apps):
        yield made


def token_for(
    setup: Setup,
    slug: str,
    department: str,
    bsn: str,
    categories: list[str],
    purpose: str = "bijstand",
    **approval: Any,
) -> str:
    base = setup.kluis.base_url
    auth = setup.clients[f"{slug}/{department}"]
    details = [{"type": "kluis:records", "categories": categories, "purpose": purpose}]
    asked = httpx.post(
        base + "/oauth/bc-authorize",
        auth=auth,
        data={"login_hint": bsn, "authorization_details": json.dumps(details)},
    )
    assert asked.status_code == 200, asked.text
    with setup.kluis.services.db.session() as s:
        resident_token = setup.kluis.services.oauth.issue_user_token(
            s,
            operator(),
            role="resident",
            tenant_id=setup.tenants[slug],
            subject=setup.residents[f"{slug}/{bsn}"],
        )
    me = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {resident_token}"})
    [item] = [x for x in me.get("/api/v1/me/consent-requests").json()["items"] if x["status"] == "pending"]
    assert me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json=approval).status_code == 200
    me.close()
    response = httpx.post(
        base + "/oauth/token",
        auth=auth,
        data={"grant_type": CIBA, "auth_req_id": asked.json()["auth_req_id"]},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def get(setup: Setup, token: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(setup.kluis.base_url + path, params=params, headers={"Authorization": f"Bearer {token}"})


def refused(response: httpx.Response, status: int = 403) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"].startswith("urn:kluis:problem:") and body["status"] == status
    assert {"title", "detail", "instance", "request_id"} <= set(body)
    assert "Traceback" not in response.text and BSN_A not in response.text
    return body


def last_reason(setup: Setup, slug: str, name: str = "vault:record:read") -> tuple[str | None, str | None]:
    with setup.kluis.services.db.read_session() as s:
        row = s.execute(
            text(
                "SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND name = :n "
                "ORDER BY seq DESC LIMIT 1"
            ),
            {"t": setup.tenants[slug], "n": name},
        ).first()
    assert row is not None
    parsed = leaf.parse(bytes(row[0]))
    return parsed.get("decision"), parsed.get("reason")


def test_allowed_reads_list_fields_and_history(setup: Setup) -> None:
    token = token_for(setup, "api-a", "inkomen", BSN_A, ["inkomen"])
    read = get(setup, token, "/api/v1/records/inkomen")
    assert read.status_code == 200, read.text
    body = read.json()
    assert set(body) == {"category", "version", "updated_at", "source", "data"}
    assert body["data"]["maandinkomen"] == 1000.0 and body["category"] == "inkomen"
    assert read.headers["api-version"] and read.headers["cache-control"] == "no-store"
    assert read.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in read.headers["content-security-policy"]
    assert "access-control-allow-origin" not in read.headers
    assert last_reason(setup, "api-a") == ("allow", None)
    listed = get(setup, token, "/api/v1/records")
    assert [i["category"] for i in listed.json()["items"]] == ["inkomen"]  # not schulden: not granted
    assert "data" not in listed.json()["items"][0]
    minimal = get(setup, token, "/api/v1/records/inkomen", fields="maandinkomen")
    assert minimal.json()["data"] == {"maandinkomen": 1000.0}
    with setup.kluis.services.db.read_session() as s:
        row = s.execute(
            text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t ORDER BY seq DESC LIMIT 1"),
            {"t": setup.tenants["api-a"]},
        ).first()
    assert row is not None and leaf.parse(bytes(row[0]))["details"]["fields"] == "maandinkomen"
    history = get(setup, token, "/api/v1/records/inkomen/versions")
    assert [v["version"] for v in history.json()["items"]] == [1]
    assert (
        get(setup, token, "/api/v1/records/inkomen/versions/1").json()["data"]["werkgever"] == "Loopback BV"
    )
    assert get(setup, token, "/api/v1/records/inkomen/versions/7").status_code == 404


def test_read_parameters_are_checked_as_documented(setup: Setup) -> None:
    # The read endpoint checks its path and query parameters itself (the hot path); the answers must
    # be those of every other endpoint: 400 invalid-request naming where, never echoing the input.
    token = token_for(setup, "api-a", "inkomen", BSN_A, ["inkomen"])
    bad_category = refused(get(setup, token, "/api/v1/records/Inkomen"), 400)
    assert bad_category["type"] == "urn:kluis:problem:invalid-request"
    assert [e["location"] for e in bad_category["errors"]] == ["path/category"]
    too_long = refused(get(setup, token, "/api/v1/records/" + "a" * 65), 400)
    assert [e["location"] for e in too_long["errors"]] == ["path/category"]
    bad_fields = refused(get(setup, token, "/api/v1/records/inkomen", fields="a;b"), 400)
    assert [e["location"] for e in bad_fields["errors"]] == ["query/fields"]
    assert "a;b" not in json.dumps(bad_fields)
    both = refused(get(setup, token, "/api/v1/records/X", fields="x" * 1001), 400)
    assert [e["location"] for e in both["errors"]] == ["path/category", "query/fields"]
    # The token is checked first, as for every endpoint: no token, no hint about the parameters.
    assert httpx.get(setup.kluis.base_url + "/api/v1/records/Inkomen").status_code == 401
    # An endpoint that declares the same parameters the FastAPI way answers alike.
    declared = refused(get(setup, token, "/api/v1/records/Inkomen/versions"), 400)
    assert [e["location"] for e in declared["errors"]] == ["path/category"]
    assert declared["errors"][0]["message"] == bad_category["errors"][0]["message"]


def test_concurrent_reads_of_several_grants_each_get_their_own_resident(setup: Setup) -> None:
    # Concurrent reads share statements (PostgreSQL looks up the grants of waiting requests in one)
    # and audit commits: every answer must still be its own grant's resident, every refusal its own.
    expected = {
        token_for(setup, "api-a", "inkomen", BSN_A, ["inkomen"]): 1000.0,
        token_for(setup, "api-a", "inkomen", BSN_B, ["inkomen"]): 1001.0,
        token_for(setup, "api-b", "inkomen", BSN_A, ["inkomen"]): 1100.0,
        token_for(setup, "api-b", "inkomen", BSN_C, ["inkomen"]): 1102.0,
    }
    outside = token_for(setup, "api-b", "inkomen", BSN_B, ["inkomen"])
    for token in [*expected, outside]:  # verified once (the first read of a token takes another path)
        assert get(setup, token, "/api/v1/records/inkomen").status_code == 200

    async def burst() -> list[tuple[str, httpx.Response]]:
        async with httpx.AsyncClient(base_url=setup.kluis.base_url) as client:

            async def read(token: str, category: str) -> tuple[str, httpx.Response]:
                headers = {"Authorization": f"Bearer {token}"}
                return token, await client.get(f"/api/v1/records/{category}", headers=headers)

            reads = [read(token, "inkomen") for token in expected for _ in range(6)]
            reads += [read(outside, "schulden") for _ in range(6)]
            return list(await asyncio.gather(*reads))

    answers = asyncio.run(burst())
    assert len(answers) == 30
    for token, response in answers:
        if token == outside:
            refused(response)
        else:
            assert response.status_code == 200, response.text
            assert response.json()["data"]["maandinkomen"] == expected[token]


def test_a_first_read_holds_one_pooled_connection_at_a_time(setup: Setup) -> None:
    # A token's first read verifies it with a session and then looks the grant up on a connection
    # of the same pool. Holding the session's connection while taking another let a burst of first
    # reads (one per thread) empty the pool and wait on each other until the pool timed out.
    from sqlalchemy import event

    svc = setup.kluis.services
    token = token_for(setup, "api-a", "inkomen", BSN_A, ["inkomen"])
    held: dict[int, int] = {}
    most: list[int] = [0]

    def taken(*_: Any) -> None:
        me = threading.get_ident()
        held[me] = held.get(me, 0) + 1
        most[0] = max(most[0], held[me])

    def given_back(*_: Any) -> None:  # also for connections taken before (the checkpoint signer's)
        me = threading.get_ident()
        held[me] = held.get(me, 0) - 1

    pool = svc.db.read_engine.pool
    svc.lean.close()  # no connection kept aside: the look-up must take one from the pool
    tokens = svc.oauth.tokens
    tokens.ring = KeyRing(tokens.ring.overlap)  # as on a node just started: the keys come from the database
    event.listen(pool, "checkout", taken)
    event.listen(pool, "checkin", given_back)
    event.listen(pool, "detach", given_back)
    try:
        assert get(setup, token, "/api/v1/records/inkomen").status_code == 200
    finally:
        event.remove(pool, "checkout", taken)
        event.remove(pool, "checkin", given_back)
        event.remove(pool, "detach", given_back)
    assert most[0] == 1


def test_the_fast_lane_answers_exactly_as_the_full_stack(setup: Setup) -> None:
    """``GET /api/v1/records/{category}`` skips the framework's layers (kluis/api/fastlane.py):
    every kind of answer must be the one the full stack gives, headers included."""
    token = token_for(setup, "api-b", "inkomen", BSN_C, ["inkomen"])
    path = "/api/v1/records/"
    cases: list[tuple[str, dict[str, str], dict[str, str]]] = [
        (path + "inkomen", {}, {"Authorization": f"Bearer {token}"}),  # 200
        (path + "inkomen", {"fields": "werkgever,periode"}, {"Authorization": f"Bearer {token}"}),
        (path + "inkomen", {"fields": "a;b"}, {"Authorization": f"Bearer {token}"}),  # 400
        (path + "x" * 65, {}, {"Authorization": f"Bearer {token}"}),  # 400: too long a category
        (path + "schulden", {}, {"Authorization": f"Bearer {token}"}),  # 403, audited
        (path + "inkomen", {}, {}),  # 401 without a challenge's error code
        (path + "inkomen", {}, {"Authorization": "Bearer not-a-token"}),  # 401
        (path + "inkomen", {}, {"Authorization": f"Bearer {token}", "X-Padding": "x" * 17_000}),  # 431
        (
            path + "inkomen",
            {},
            {"Authorization": f"Bearer {token}", "Traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"},
        ),
    ]

    def answers() -> list[tuple[int, dict[str, str], Any]]:
        found = []
        for url, params, headers in cases:
            response = httpx.get(setup.kluis.base_url + url, params=params, headers=headers)
            kept = {k: v for k, v in response.headers.items() if k not in {"date", "x-request-id"}}
            body: Any = response.json()
            if response.status_code >= 400:  # a problem names its occurrence: another id each time
                assert body.pop("request_id", "") == response.headers["x-request-id"]
                assert body.pop("instance", "").endswith(response.headers["x-request-id"])
            found.append((response.status_code, kept, body))
        return found

    [app] = setup.apps
    taken: list[str] = []
    lane_app = app._lane
    assert lane_app is not None

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        taken.append(scope["path"])
        await lane_app(scope, receive, send)

    app._lane = counted
    try:
        lane = answers()
        with app.fast_lane_closed():
            full = answers()
    finally:
        app._lane = lane_app
    assert len(taken) == len(cases)  # every case took the lane the first time, none the second
    assert [status for status, _, _ in lane] == [200, 200, 400, 400, 403, 401, 401, 431, 200]
    assert lane == full


def test_a_category_outside_the_grant_is_refused_and_audited(setup: Setup) -> None:
    token = token_for(setup, "api-a", "inkomen", BSN_B, ["inkomen"])
    refused(get(setup, token, "/api/v1/records/schulden"))
    assert last_reason(setup, "api-a") == ("deny", "category_not_granted")
    assert get(setup, token, "/api/v1/records/inkomen").json()["data"]["maandinkomen"] == 1001.0


def test_after_revocation_the_next_read_is_refused(setup: Setup) -> None:
    token = token_for(setup, "api-a", "inkomen", BSN_C, ["inkomen"])
    assert get(setup, token, "/api/v1/records/inkomen").status_code == 200
    with setup.kluis.services.db.session() as s:
        rt = setup.kluis.services.oauth.issue_user_token(
            s,
            operator(),
            role="resident",
            tenant_id=setup.tenants["api-a"],
            subject=setup.residents[f"api-a/{BSN_C}"],
        )
    me = httpx.Client(base_url=setup.kluis.base_url, headers={"Authorization": f"Bearer {rt}"})
    active = [g for g in me.get("/api/v1/me/grants").json()["items"] if not g.get("revoked_at")]
    for grant in active:
        assert me.post(f"/api/v1/me/grants/{grant['id']}/revoke").status_code in (200, 204)
    me.close()
    body = refused(get(setup, token, "/api/v1/records/inkomen"))
    assert body["status"] == 403


def test_after_expiry_the_grant_no_longer_reads(setup: Setup) -> None:
    token = token_for(setup, "api-b", "inkomen", BSN_A, ["inkomen"])
    assert get(setup, token, "/api/v1/records/inkomen").status_code == 200
    with setup.kluis.services.db.session() as s:
        s.execute(
            update(Grant)
            .where(col(Grant.tenant_id) == setup.tenants["api-b"])
            .values(valid_until=utcnow() - timedelta(seconds=1))
        )
        s.commit()
    refused(get(setup, token, "/api/v1/records/inkomen"))


def test_after_erasure_nothing_is_read(setup: Setup) -> None:
    token = token_for(setup, "api-b", "inkomen", BSN_B, ["inkomen"])
    assert get(setup, token, "/api/v1/records/inkomen").status_code == 200
    svc = setup.kluis.services
    with svc.db.session() as s:
        svc.vault.erase_resident(
            s, operator(), svc.vault.resident(s, setup.tenants["api-b"], setup.residents[f"api-b/{BSN_B}"])
        )
    response = get(setup, token, "/api/v1/records/inkomen")
    assert response.status_code in (401, 403)
    refused(response, response.status_code)


def test_tokens_only_ever_reach_their_own_tenant_resident_and_department(setup: Setup) -> None:
    in_a = token_for(
        setup,
        "api-a",
        "jeugdzorg",
        BSN_A,
        ["jeugdzorg.dossier"],
        purpose="jeugdhulp",
        allow_write=["jeugdzorg.dossier"],
    )
    in_b = token_for(setup, "api-b", "inkomen", BSN_C, ["inkomen"])
    # The resident comes from the grant: B's token reads B's resident (1102), never A's (1000 / 1002).
    assert get(setup, in_b, "/api/v1/records/inkomen").json()["data"]["maandinkomen"] == 1102.0
    # Another department's token: jeugdzorg's grant does not cover inkomen.
    refused(get(setup, in_a, "/api/v1/records/inkomen"))
    assert last_reason(setup, "api-a") == ("deny", "category_not_granted")
    # Writing within the grant works, is versioned and validated; outside it is refused.
    put = httpx.put(
        setup.kluis.base_url + "/api/v1/records/jeugdzorg.dossier",
        headers={"Authorization": f"Bearer {in_a}"},
        json={"status": "in_behandeling"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["version"] == 1 and put.json()["source"] == "department:jeugdzorg"
    bad = httpx.put(
        setup.kluis.base_url + "/api/v1/records/jeugdzorg.dossier",
        headers={"Authorization": f"Bearer {in_a}"},
        json={"status": "onbekend"},
    )
    refused(bad, 422)
    refused(
        httpx.put(
            setup.kluis.base_url + "/api/v1/records/inkomen",
            headers={"Authorization": f"Bearer {in_b}"},
            json={"maandinkomen": 1.0},
        )
    )
    assert last_reason(setup, "api-b", "vault:record:written") == ("deny", "write_not_granted")
    # A forged or foreign token is a 401, never a look into another tenant.
    tampered = in_b[:-4] + ("AAAA" if not in_b.endswith("AAAA") else "BBBB")
    refused(get(setup, tampered, "/api/v1/records/inkomen"), 401)
    refused(get(setup, "not-a-token", "/api/v1/records/inkomen"), 401)
    refused(httpx.get(setup.kluis.base_url + "/api/v1/records/inkomen"), 401)


def test_the_audit_log_of_every_tenant_still_verifies(setup: Setup) -> None:
    from audit.checkpoints import CheckpointVerifier
    from audit.verify import verify_log

    svc = setup.kluis.services
    with svc.db.read_session() as s:
        verifier = CheckpointVerifier(svc.signing.public_jwks(s, "checkpoint"))
        for tenant_id in setup.tenants.values():
            result = verify_log(s, tenant_id, verifier)
            assert result.ok, result.to_json()


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(setup: Setup) -> None:
    token = token_for(setup, "api-b", "inkomen", BSN_C, ["inkomen"])
    settings = setup.kluis.settings
    before = settings.rate_limit_per_minute
    settings.rate_limit_per_minute = 2
    try:
        audited_before = refusals(setup, "api-b")
        answers = [get(setup, token, "/api/v1/records/inkomen") for _ in range(6)]
    finally:
        settings.rate_limit_per_minute = before
    assert answers[-1].status_code == 429
    assert int(answers[-1].headers["retry-after"]) >= 1
    refused(answers[-1], 429)
    # The refusals are audited, once per client and minute rather than once per request (a client
    # over its limit cannot write the log at its own rate): one entry, two if a minute turned.
    turned_away = sum(a.status_code == 429 for a in answers)
    audited = [e for e in refusals(setup, "api-b")[len(audited_before) :] if e["reason"] == "rate_limited"]
    assert turned_away >= 3 and 1 <= len(audited) <= 2 < turned_away
    # The client's entry: not in the trail of the resident whose read crossed the limit.
    assert all(e["data_subject_id"] is None and e["grant_id"] is None for e in audited)
    assert all(e["client_id"] == setup.clients["api-b/inkomen"][0] for e in audited)


def refusals(setup: Setup, slug: str) -> list[dict[str, Any]]:
    with setup.kluis.services.db.read_session() as s:
        rows = s.execute(
            text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND name = :n ORDER BY seq"),
            {"t": setup.tenants[slug], "n": "consent:token:refused"},
        )
        return [leaf.parse(bytes(r[0])) for r in rows]


def test_the_oauth_endpoints_limit_each_address(setup: Setup) -> None:
    # Where clients authenticate, each address has a limit, counted before anything is looked up:
    # wrong secrets, and right ones, get 429 problem+json with Retry-After until the window passes.
    settings = setup.kluis.settings
    client_id, secret = setup.clients["api-a/inkomen"]
    token_url = setup.kluis.base_url + "/oauth/token"
    before = settings.oauth_rate_limit_per_minute
    settings.oauth_rate_limit_per_minute = 1
    try:
        guesses = [
            httpx.post(
                token_url,
                auth=(client_id, f"guess-{i}"),
                data={"grant_type": "refresh_token", "refresh_token": "x"},
            )
            for i in range(3)
        ]
        right = httpx.post(
            token_url, auth=(client_id, secret), data={"grant_type": "refresh_token", "refresh_token": "x"}
        )
    finally:
        settings.oauth_rate_limit_per_minute = before
    assert guesses[-1].status_code == 429 and right.status_code == 429
    assert int(right.headers["retry-after"]) >= 1
    refused(right, 429)
    # Under the configured limit again, the same request is answered on its merits.
    again = httpx.post(
        token_url, auth=(client_id, secret), data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_request_limits_answer_problems_and_write_nothing(setup: Setup) -> None:
    token = token_for(
        setup,
        "api-a",
        "jeugdzorg",
        BSN_B,
        ["jeugdzorg.dossier"],
        purpose="jeugdhulp",
        allow_write=["jeugdzorg.dossier"],
    )
    url = setup.kluis.base_url + "/api/v1/records/jeugdzorg.dossier"
    auth = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    deep = "[" * 100 + "]" * 100
    for content_type in ("application/json", "Application/JSON"):  # media types ignore case
        headers = {**auth, "content-type": content_type}
        sent = '{"status": "aangemeld", "x": ' + deep + "}"
        body = refused(httpx.put(url, headers=headers, content=sent), 400)
        assert "nested" in body["detail"], content_type
    big = (
        '{"status": "aangemeld", "samenvatting": "' + "x" * (setup.kluis.settings.max_body_bytes + 10) + '"}'
    )
    refused(httpx.put(url, headers=auth, content=big), 413)
    refused(httpx.get(url, headers={**auth, "x-padding": "y" * 20_000}), 431)
    listed = httpx.get(
        setup.kluis.base_url + "/api/v1/records/jeugdzorg.dossier/versions",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert listed.status_code == 404  # nothing was written by the refused requests
