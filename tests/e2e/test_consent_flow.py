"""The consent flow over real HTTP on loopback, with client libraries this project did not write:
authlib makes the private_key_jwt assertions (RFC 7523), httpx makes the calls.

request → pending → approve → token → read → revoke → the next read is refused → introspection
inactive; and deny, expiry, narrowing, slow_down, refresh, and the refusals an attacker would try.
Every refusal is checked for its status and error, never a 5xx, and for its audit entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import ECKey
from jwcrypto import jwk, jws
from sqlalchemy import text, update
from sqlmodel import col

from audit import leaf
from audit.schemas import Actor, TraceContext
from consent.models import ConsentRequest
from kluis.wiring import utcnow
from tests.e2e.conftest import LiveKluis
from tests.support.world import municipality
from vault.models import Tenant
from vault.services import Context

CIBA = "urn:openid:params:grant-type:ciba"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BSN = "999993653"
BSN_NARROW = "111222333"
BSN_DENY = "999990019"
BSN_EXPIRE = "999990032"
BSN_SLOW = "999990044"
BSN_OTHER_TOWN = "999990056"
BSN_REFRESH = "999990068"
BSN_DPOP = "999990081"
INCOME = {"maandinkomen": 2100.0, "werkgever": "Loopback BV"}


def operator() -> Context:
    return Context(actor=Actor(type="operator", id="cli:e2e"), trace=TraceContext.new(), now=utcnow())


@dataclass
class Department:
    """A department's OAuth client as the department holds it: its id and key (or secret)."""

    base_url: str
    client_id: str
    key: ECKey | None = None
    secret: str | None = None
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def post(self, path: str, data: dict[str, str], **overrides: Any) -> httpx.Response:
        url = self.base_url + path
        form = dict(data)
        auth: tuple[str, str] | None = None
        if self.key is not None:
            audience = overrides.pop("audience", self.base_url + "/oauth/token")
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = overrides.pop("assertion", None) or private_key_jwt_sign(
                self.key, self.client_id, audience, alg="ES256", header={"kid": self.key.kid}, **overrides
            )
        else:
            assert self.secret is not None
            auth = (self.client_id, overrides.pop("secret", self.secret))
        if auth is None:
            return self.http.post(url, data=form)
        return self.http.post(url, data=form, auth=auth)

    def ask(self, bsn: str, categories: list[str], purpose: str = "bijstand", **extra: str) -> httpx.Response:
        details = [{"type": "kluis:records", "categories": categories, "purpose": purpose}]
        return self.post(
            "/oauth/bc-authorize", {"login_hint": bsn, "authorization_details": json.dumps(details), **extra}
        )

    def poll(self, auth_req_id: str) -> httpx.Response:
        return self.post("/oauth/token", {"grant_type": CIBA, "auth_req_id": auth_req_id})

    def wait_for_token(self, auth_req_id: str) -> httpx.Response:
        """Poll as a CIBA client does: honour slow_down and authorization_pending."""
        deadline = time.monotonic() + 15
        while True:
            response = self.poll(auth_req_id)
            error = response.json().get("error") if response.status_code == 400 else None
            if error not in ("authorization_pending", "slow_down") or time.monotonic() > deadline:
                return response
            time.sleep(1.1)

    def read(self, token: str, path: str = "/api/v1/records/inkomen") -> httpx.Response:
        return self.http.get(self.base_url + path, headers={"Authorization": f"Bearer {token}"})


@dataclass
class Town:
    tenant: Tenant
    inkomen: Department  # private_key_jwt
    jeugdzorg: Department  # client_secret_basic (development)
    residents: dict[str, str]


@pytest.fixture(scope="module")
def towns(kluis_instance: LiveKluis) -> Iterator[dict[str, Town]]:
    svc = kluis_instance.services
    made: dict[str, Town] = {}
    with svc.db.session() as s:
        for slug, bsns in (
            ("e2e-a", [BSN, BSN_NARROW, BSN_DENY, BSN_EXPIRE, BSN_SLOW, BSN_REFRESH, BSN_DPOP]),
            ("e2e-b", [BSN, BSN_OTHER_TOWN]),
        ):
            # The jeugdzorg client is made here (a secret); the inkomen one below (private_key_jwt).
            place = municipality(
                s,
                svc,
                svc.vault,
                operator(),
                slug,
                name=slug.upper(),
                departments=("inkomen", "jeugdzorg"),
                clients=("jeugdzorg",),
            )
            tenant = place.tenant
            residents = {}
            for bsn in bsns:
                resident = svc.vault.add_resident(s, operator(), tenant, bsn)
                svc.vault.put_record(s, operator(), resident, "inkomen", INCOME, source="e2e")
                residents[bsn] = resident.id
            key = ECKey.generate_key("P-256", parameters={"kid": f"{slug}-1"})
            jwt_client, _ = svc.clients.create(
                s, operator(), tenant, "inkomen", jwks={"keys": [key.as_dict(private=False)]}
            )
            secret_client_id, secret = place.clients["jeugdzorg"]
            made[slug] = Town(
                tenant=tenant,
                inkomen=Department(kluis_instance.base_url, jwt_client.id, key=key),
                jeugdzorg=Department(kluis_instance.base_url, secret_client_id, secret=secret),
                residents=residents,
            )
    yield made
    for town in made.values():
        town.inkomen.http.close()
        town.jeugdzorg.http.close()


def resident_client(kluis: LiveKluis, town: Town, bsn: str) -> httpx.Client:
    with kluis.services.db.session() as s:
        token = kluis.services.oauth.issue_user_token(
            s, operator(), role="resident", tenant_id=town.tenant.id, subject=town.residents[bsn]
        )
    return httpx.Client(base_url=kluis.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def pending(me: httpx.Client) -> list[dict[str, Any]]:
    listing = me.get("/api/v1/me/consent-requests", params={"status": "pending"})
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert set(body) == {"items", "next_cursor"}
    return [x for x in body["items"] if x["status"] == "pending"]


def audit_reasons(kluis: LiveKluis, town: Town, name: str) -> list[str]:
    with kluis.services.db.read_session() as s:
        rows = s.execute(
            text("SELECT leaf_bytes FROM audit_entry WHERE tenant_id = :t AND name = :n ORDER BY seq"),
            {"t": town.tenant.id, "n": name},
        )
        return [str(leaf.parse(bytes(r[0]))["reason"]) for r in rows]


def oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and BSN not in response.text
    return body


def approved_token(kluis: LiveKluis, town: Town, bsn: str, **approval: Any) -> dict[str, Any]:
    dept = town.inkomen
    asked = dept.ask(bsn, ["inkomen"])
    assert asked.status_code == 200, asked.text
    with resident_client(kluis, town, bsn) as me:
        [item] = pending(me)
        assert me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json=approval).status_code == 200
    response = dept.wait_for_token(asked.json()["auth_req_id"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- the main flow ---------------------------------------------------------------------------------
def test_request_approve_read_revoke_refused(kluis_instance: LiveKluis, towns: dict[str, Town]):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    meta = httpx.get(kluis_instance.url("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == kluis_instance.base_url
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert meta["backchannel_token_delivery_modes_supported"] == ["poll"]
    jwks = httpx.get(meta["jwks_uri"]).json()

    asked = dept.ask(BSN, ["inkomen"], binding_message="Aanvraag 2026-17")
    assert asked.status_code == 200, asked.text
    body = asked.json()
    assert set(body) == {"auth_req_id", "expires_in", "interval"} and body["interval"] == 1
    oauth_error(dept.poll(body["auth_req_id"]), 400, "authorization_pending")

    with resident_client(kluis_instance, town, BSN) as me:
        [item] = pending(me)
        assert item["binding_message"] == "Aanvraag 2026-17" and item["purpose"]["code"] == "bijstand"
        approved = me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json={})
        assert approved.status_code == 200, approved.text
        grant = approved.json()
        assert grant["status"] == "active" and grant["categories"] == ["inkomen"]

        token_response = dept.wait_for_token(body["auth_req_id"])
        assert token_response.status_code == 200, token_response.text
        tokens = token_response.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] <= 300
        access = tokens["access_token"]

        # RFC 9068: typ at+jwt, signed by a key the JWKS publishes; the subject is not the BSN.
        header = json.loads(base64.urlsafe_b64decode(access.split(".")[0] + "=="))
        assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
        key = jwk.JWK(**next(k for k in jwks["keys"] if k["kid"] == header["kid"]))
        verified = jws.JWS()
        verified.deserialize(access)
        verified.verify(key, alg="ES256")
        claims = json.loads(verified.payload)
        assert claims["sub"] != BSN and BSN not in access and claims["aud"] == kluis_instance.url("/api/v1")
        assert claims["authorization_details"][0]["grant_id"] == grant["id"]

        read = dept.read(access)
        assert read.status_code == 200 and "Loopback BV" in read.text
        introspected = dept.post(
            "/oauth/introspect", {"token": access}, audience=kluis_instance.url("/oauth/introspect")
        )
        assert introspected.status_code == 200 and introspected.json()["active"] is True

        listed = me.get("/api/v1/me/grants").json()["items"]
        assert [g["id"] for g in listed if g["revoked_at"] is None] == [grant["id"]]
        revoked = me.post(f"/api/v1/me/grants/{grant['id']}/revoke")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None

    refused = problem(dept.read(access), 403)
    assert refused["type"] == "urn:kluis:problem:access-denied"
    assert dept.post("/oauth/introspect", {"token": access}).json() == {"active": False}
    assert "grant_revoked" in audit_reasons(kluis_instance, town, "consent:token:refused")


def test_deny(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    asked = dept.ask(BSN_DENY, ["inkomen"]).json()
    with resident_client(kluis_instance, town, BSN_DENY) as me:
        [item] = pending(me)
        denied = me.post(f"/api/v1/me/consent-requests/{item['id']}/deny")
        assert denied.status_code == 200 and denied.json()["status"] == "denied"
        problem(me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json={}), 409)
    time.sleep(1.05)
    oauth_error(dept.poll(asked["auth_req_id"]), 400, "access_denied")


def test_expiry(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    asked = dept.ask(BSN_EXPIRE, ["inkomen"], requested_expiry="60")
    assert asked.status_code == 200 and asked.json()["expires_in"] == 60
    with kluis_instance.services.db.session() as s:  # let a minute pass for this request only
        s.execute(
            update(ConsentRequest)
            .where(col(ConsentRequest.resident_id) == town.residents[BSN_EXPIRE])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        s.commit()
    oauth_error(dept.poll(asked.json()["auth_req_id"]), 400, "expired_token")
    with resident_client(kluis_instance, town, BSN_EXPIRE) as me:
        items = me.get("/api/v1/me/consent-requests").json()["items"]
        assert [i["status"] for i in items] == ["expired"]
        problem(me.post(f"/api/v1/me/consent-requests/{items[0]['id']}/approve", json={}), 409)


def test_narrowing(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    asked = dept.ask(BSN_NARROW, ["inkomen", "schulden"]).json()
    until = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    with resident_client(kluis_instance, town, BSN_NARROW) as me:
        [item] = pending(me)
        wider = me.post(
            f"/api/v1/me/consent-requests/{item['id']}/approve", json={"categories": ["brp.persoon"]}
        )
        problem(wider, 422)
        narrowed = me.post(
            f"/api/v1/me/consent-requests/{item['id']}/approve",
            json={"categories": ["schulden"], "valid_until": until.isoformat()},
        )
        assert narrowed.status_code == 200, narrowed.text
    token = dept.wait_for_token(asked["auth_req_id"]).json()
    assert token["authorization_details"][0]["categories"] == ["schulden"]
    problem(dept.read(token["access_token"]), 403)  # inkomen was not granted
    assert dept.read(token["access_token"], "/api/v1/records/schulden").status_code in (200, 404)


def test_slow_down(kluis_instance, towns):
    dept = towns["e2e-a"].inkomen
    asked = dept.ask(BSN_SLOW, ["inkomen"]).json()
    oauth_error(dept.poll(asked["auth_req_id"]), 400, "authorization_pending")
    oauth_error(dept.poll(asked["auth_req_id"]), 400, "slow_down")
    time.sleep(1.05)
    oauth_error(dept.poll(asked["auth_req_id"]), 400, "authorization_pending")


def test_refresh_and_token_revocation(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    tokens = approved_token(kluis_instance, town, BSN_REFRESH)
    renewed = dept.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert dept.read(fresh["access_token"]).status_code == 200
    revoked = dept.post(
        "/oauth/revoke", {"token": fresh["access_token"]}, audience=kluis_instance.url("/oauth/revoke")
    )
    assert revoked.status_code == 200
    refused = dept.read(fresh["access_token"])
    problem(refused, 401)
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    reused = dept.post(
        "/oauth/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    oauth_error(reused, 400, "invalid_grant")
    assert "refresh_token_reused" in audit_reasons(kluis_instance, town, "consent:token:refused")


# -- client authentication ---------------------------------------------------------------------------
def test_secret_clients_work_and_wrong_secrets_do_not(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].jeugdzorg
    details = json.dumps([{"type": "kluis:records", "categories": ["inkomen"], "purpose": "bijstand"}])
    good = dept.ask(BSN_SLOW, ["inkomen"])
    assert good.status_code == 200, good.text
    wrong = dept.post(
        "/oauth/bc-authorize", {"login_hint": BSN, "authorization_details": details}, secret="nope"
    )
    oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert "wrong_secret" in audit_reasons(kluis_instance, town, "consent:client:authentication_failed")
    unknown = httpx.post(
        kluis_instance.url("/oauth/token"),
        auth=("0" * 32, "x"),
        data={"grant_type": CIBA, "auth_req_id": "x"},
    )
    oauth_error(unknown, 401, "invalid_client")
    post_secret = httpx.post(
        kluis_instance.url("/oauth/token"),
        data={
            "grant_type": CIBA,
            "auth_req_id": "x",
            "client_id": dept.client_id,
            "client_secret": dept.secret,
        },
    )
    oauth_error(post_secret, 400, "invalid_grant")  # authenticated fine; the auth_req_id is made up


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_audience", "assertion_wrong_audience"),
        ("expired", "assertion_expired"),
        ("replayed", "assertion_replayed"),
        ("wrong_key", "assertion_bad_signature"),
    ],
)
def test_bad_assertions(kluis_instance, towns, case, reason):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    now = int(time.time())
    token_url = kluis_instance.url("/oauth/token")
    form = {"grant_type": CIBA, "auth_req_id": "whatever"}
    if case == "wrong_audience":
        response = dept.post("/oauth/token", form, audience="https://elsewhere.example/token")
    elif case == "expired":
        response = dept.post("/oauth/token", form, issued_at=now - 900, expires_at=now - 600)
    elif case == "replayed":
        value = private_key_jwt_sign(
            dept.key, dept.client_id, token_url, alg="ES256", header={"kid": dept.key.kid}
        )
        oauth_error(dept.post("/oauth/token", form, assertion=value), 400, "invalid_grant")
        response = dept.post("/oauth/token", form, assertion=value)
    else:
        impostor = ECKey.generate_key("P-256", parameters={"kid": dept.key.kid})
        value = private_key_jwt_sign(
            impostor, dept.client_id, token_url, alg="ES256", header={"kid": impostor.kid}
        )
        response = dept.post("/oauth/token", form, assertion=value)
    oauth_error(response, 401, "invalid_client")
    assert reason in audit_reasons(kluis_instance, town, "consent:client:authentication_failed")


# -- forged and misplaced tokens -----------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_forged_tokens_are_refused(kluis_instance, towns):
    town, dept = towns["e2e-a"], towns["e2e-a"].inkomen
    real = approved_token(kluis_instance, town, BSN_REFRESH)["access_token"]
    header = json.loads(base64.urlsafe_b64decode(real.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(real.split(".")[1] + "=="))
    public = jwk.JWK(
        **next(
            k
            for k in httpx.get(kluis_instance.url("/.well-known/jwks.json")).json()["keys"]
            if k["kid"] == header["kid"]
        )
    )

    none = f"{_b64(json.dumps({**header, 'alg': 'none'}).encode())}.{real.split('.')[1]}."
    hs_head = _b64(json.dumps({**header, "alg": "HS256"}).encode())
    body = real.split(".")[1]
    mac = hmac.new(public.export_to_pem(), f"{hs_head}.{body}".encode(), hashlib.sha256).digest()
    hs256 = f"{hs_head}.{body}.{_b64(mac)}"
    attacker = jwk.JWK.generate(kty="EC", crv="P-256")
    embedded = jws.JWS(json.dumps(claims).encode())
    embedded.add_signature(
        attacker, alg="ES256", protected=json.dumps({**header, "jwk": json.loads(attacker.export_public())})
    )
    with kluis_instance.services.db.session() as s:  # signed by the vault itself, but expired
        expired = kluis_instance.services.oauth.tokens.sign(
            s, {**claims, "iat": claims["iat"] - 400, "exp": claims["iat"] - 100}, "at+jwt", utcnow()
        )
        s.commit()
    head, _payload, signature = real.split(".")
    tampered = f"{head}.{_b64(json.dumps({**claims, 'exp': claims['exp'] + 3600}).encode())}.{signature}"
    with kluis_instance.services.db.session() as s:
        resident_token = kluis_instance.services.oauth.issue_user_token(
            s, operator(), role="resident", tenant_id=town.tenant.id, subject=town.residents[BSN]
        )
    for forged in (
        none,
        hs256,
        embedded.serialize(compact=True),
        expired,
        tampered,
        resident_token,
        "x" * 9000,
    ):
        refused = dept.read(forged)
        problem(refused, 401)
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    problem(httpx.get(kluis_instance.url("/api/v1/records/inkomen")), 401)
    reasons = audit_reasons(kluis_instance, town, "consent:token:refused")
    for reason in ("algorithm_not_allowed", "header_not_allowed", "bad_signature", "token_expired"):
        assert reason in reasons
    assert dept.read(real).status_code == 200  # the real one still works


def test_towns_are_sealed_off_from_each_other(kluis_instance, towns):
    a, b = towns["e2e-a"], towns["e2e-b"]
    # A client of A asking about a resident only B knows gets the same answer as ever...
    asked = a.inkomen.ask(BSN_OTHER_TOWN, ["inkomen"])
    assert asked.status_code == 200 and set(asked.json()) == {"auth_req_id", "expires_in", "interval"}
    with resident_client(kluis_instance, b, BSN_OTHER_TOWN) as me:
        assert pending(me) == []  # ...and B's resident never sees it.
    oauth_error(a.inkomen.poll(asked.json()["auth_req_id"]), 400, "authorization_pending")
    # B's client cannot poll A's request, nor see A's tokens.
    oauth_error(b.jeugdzorg.poll(asked.json()["auth_req_id"]), 400, "invalid_grant")
    tokens = approved_token(kluis_instance, a, BSN_REFRESH)
    assert b.jeugdzorg.post("/oauth/introspect", {"token": tokens["access_token"]}).json() == {
        "active": False
    }
    oauth_error(
        b.jeugdzorg.post(
            "/oauth/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        ),
        400,
        "invalid_grant",
    )
    # A resident of B with the same BSN as one in A sees nothing of A.
    with resident_client(kluis_instance, b, BSN) as me:
        assert me.get("/api/v1/me/grants").json()["items"] == []


def test_another_department_cannot_use_the_grant(kluis_instance, towns):
    town = towns["e2e-a"]
    asked = town.inkomen.ask(BSN_REFRESH, ["inkomen"]).json()
    with resident_client(kluis_instance, town, BSN_REFRESH) as me:
        [item] = pending(me)
        me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json={})
    oauth_error(town.jeugdzorg.poll(asked["auth_req_id"]), 400, "invalid_grant")
    assert town.inkomen.wait_for_token(asked["auth_req_id"]).status_code == 200


@pytest.mark.parametrize(
    ("categories", "purpose", "reason"),
    [
        (["inkomen"], "marketing", "purpose_not_registered"),
        (["inkomen", "jeugdzorg.dossier"], "bijstand", "category_outside_purpose"),
    ],
)
def test_requests_outside_the_register(kluis_instance, towns, categories, purpose, reason):
    town = towns["e2e-a"]
    oauth_error(town.inkomen.ask(BSN, categories, purpose), 400, "invalid_authorization_details")
    assert reason in audit_reasons(kluis_instance, town, "consent:request:refused")


@pytest.mark.parametrize(
    "form",
    [
        {"authorization_details": "[]"},
        {"login_hint": BSN},
        {"login_hint": BSN, "authorization_details": "not json"},
        {"login_hint": BSN, "authorization_details": '[{"type": "other"}]'},
        {
            "login_hint": "123",
            "authorization_details": json.dumps(
                [{"type": "kluis:records", "categories": ["inkomen"], "purpose": "bijstand"}]
            ),
        },
    ],
)
def test_malformed_requests_are_oauth_errors(kluis_instance, towns, form):
    response = towns["e2e-a"].jeugdzorg.post("/oauth/bc-authorize", form)
    assert response.status_code == 400 and response.json()["error"] in {
        "invalid_request",
        "invalid_authorization_details",
    }


def test_the_resident_api_needs_a_resident_token(kluis_instance, towns):
    town = towns["e2e-a"]
    problem(httpx.get(kluis_instance.url("/api/v1/me/consent-requests")), 401)
    tokens = approved_token(kluis_instance, town, BSN_REFRESH)
    problem(
        httpx.get(
            kluis_instance.url("/api/v1/me/grants"),
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        ),
        401,
    )
    with resident_client(kluis_instance, town, BSN) as me:
        problem(me.post(f"/api/v1/me/grants/{'0' * 32}/revoke"), 404)
        other = resident_client(kluis_instance, town, BSN_REFRESH)
        theirs = other.get("/api/v1/me/grants").json()["items"][0]["id"]
        other.close()
        problem(me.post(f"/api/v1/me/grants/{theirs}/revoke"), 404)


# -- DPoP (RFC 9449) ---------------------------------------------------------------------------------
def dpop_proof(key: jwk.JWK, method: str, url: str, access_token: str | None = None) -> str:
    claims: dict[str, Any] = {"jti": _b64(os.urandom(16)), "htm": method, "htu": url, "iat": int(time.time())}
    if access_token is not None:
        claims["ath"] = _b64(hashlib.sha256(access_token.encode()).digest())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": json.loads(key.export_public())}
    proof = jws.JWS(json.dumps(claims).encode())
    proof.add_signature(key, alg="ES256", protected=json.dumps(header))
    return str(proof.serialize(compact=True))


def test_dpop_bound_client(kluis_instance, towns):
    town, svc = towns["e2e-a"], kluis_instance.services
    with svc.db.session() as s:
        row, secret = svc.clients.create(s, operator(), town.tenant, "jeugdzorg", secret=True, dpop=True)
        client_id = row.id
    assert secret is not None
    dept = Department(kluis_instance.base_url, client_id, secret=secret)
    try:
        _dpop_flow(kluis_instance, town, dept, client_id, secret)
    finally:
        dept.http.close()


def _dpop_flow(kluis_instance: LiveKluis, town: Town, dept: Department, client_id: str, secret: str) -> None:
    asked = dept.ask(BSN_DPOP, ["inkomen"]).json()
    with resident_client(kluis_instance, town, BSN_DPOP) as me:
        [item] = pending(me)
        me.post(f"/api/v1/me/consent-requests/{item['id']}/approve", json={})
    time.sleep(1.05)
    form = {"grant_type": CIBA, "auth_req_id": asked["auth_req_id"]}
    oauth_error(dept.post("/oauth/token", form), 400, "invalid_dpop_proof")  # bound clients need a proof
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    token_url = kluis_instance.url("/oauth/token")
    proof = dpop_proof(key, "POST", token_url)
    time.sleep(1.05)
    answer = dept.http.post(token_url, data=form, auth=(client_id, secret), headers={"DPoP": proof})
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "DPoP"
    claims = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[1] + "=="))
    assert claims["cnf"]["jkt"] == key.thumbprint()
    replayed = dept.http.post(token_url, data=form, auth=(client_id, secret), headers={"DPoP": proof})
    oauth_error(replayed, 400, "invalid_dpop_proof")

    records = kluis_instance.url("/api/v1/records/inkomen")
    access = tokens["access_token"]
    as_bearer = dept.http.get(records, headers={"Authorization": f"Bearer {access}"})
    problem(as_bearer, 401)  # a bound token is never a bearer token
    assert audit_reasons(kluis_instance, town, "consent:token:refused")[-1] == "token_scheme_mismatch"
    proof = dpop_proof(key, "GET", records, access)
    bound = dept.http.get(records, headers={"Authorization": f"DPoP {access}", "DPoP": proof})
    assert bound.status_code == 200, bound.text
    # A valid token tied to a grant with a missing, replayed or foreign proof is refused, and each
    # refusal is an entry in the tenant's log (issue 5: every attempt that can be tied to a grant).
    before = audit_reasons(kluis_instance, town, "consent:token:refused")
    thief = jwk.JWK.generate(kty="EC", crv="P-256")
    for headers in (
        {"Authorization": f"DPoP {access}"},
        {"Authorization": f"DPoP {access}", "DPoP": proof},
        {"Authorization": f"DPoP {access}", "DPoP": dpop_proof(thief, "GET", records, access)},
    ):
        answer = dept.http.get(records, headers=headers)
        # RFC 9449 §7.1: a resource server answers 401 with a DPoP challenge.
        assert problem(answer, 401)["type"] == "urn:kluis:problem:invalid-dpop-proof"
        assert answer.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof", algs="')
    after = audit_reasons(kluis_instance, town, "consent:token:refused")
    assert after[len(before) :] == ["dpop_proof_missing", "dpop_proof_replayed", "dpop_key_mismatch"]
