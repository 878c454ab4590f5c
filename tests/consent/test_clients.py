"""Client registration and authentication: secrets (development) and private_key_jwt (RFC 7523),
with assertions made by authlib, a client library this project did not write."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import ECKey, OctKey, RSAKey
from jwcrypto import jwk as jwcrypto_jwk

from consent.clients import ClientService
from consent.errors import (
    InvalidClientConfigError,
    InvalidClientError,
    InvalidRequestError,
    NotAllowedError,
)
from consent.schemas import ASSERTION_TYPE, ClientCredentials, OAuthConfig
from consent.services import ConsentServices
from kluis.db import Database
from tests.conftest import Clock
from tests.consent.conftest import ISSUER, Town, audit_rows

TOKEN_URL = ISSUER + "/oauth/token"


def authenticate(db: Database, consent: ConsentServices, ctx, credentials: ClientCredentials):
    with db.session() as s:
        return consent.clients.authenticate(s, ctx(), credentials)


def refused(db, consent, ctx, credentials: ClientCredentials) -> str:
    with pytest.raises(InvalidClientError) as caught:
        authenticate(db, consent, ctx, credentials)
    return caught.value.reason


def auth_failures(db: Database, town: Town) -> list[dict[str, Any]]:
    return [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:client:authentication_failed"]


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "k1"})


@pytest.fixture
def jwt_client(db: Database, consent: ConsentServices, ctx, town: Town, key: ECKey) -> str:
    with db.session() as s:
        row, secret = consent.clients.create(
            s, ctx(), town.tenant, "inkomen", jwks={"keys": [key.as_dict(private=False)]}
        )
    assert secret is None and row.secret_hash is None
    return row.id


def assertion(client_id: str, key: Any, audience: str = TOKEN_URL, **kwargs: Any) -> str:
    kwargs.setdefault("alg", "ES256")
    kwargs.setdefault("header", {"kid": key.kid} if getattr(key, "kid", None) else None)
    return str(private_key_jwt_sign(key, client_id, audience, **kwargs))


def with_assertion(value: str, **kwargs: Any) -> ClientCredentials:
    return ClientCredentials(assertion_type=ASSERTION_TYPE, assertion=value, endpoint=TOKEN_URL, **kwargs)


# -- secrets (development) -------------------------------------------------------------------------
def test_secret_basic_and_post(db, consent, ctx, town: Town):
    client = town.clients["inkomen"]
    secret = town.secrets["inkomen"]
    basic = authenticate(db, consent, ctx, ClientCredentials(basic=(client.client_id, secret)))
    post = authenticate(db, consent, ctx, ClientCredentials(client_id=client.client_id, client_secret=secret))
    assert basic.client_id == post.client_id == client.client_id
    assert basic.tenant_id == town.tenant.id and basic.department_code == "inkomen"
    assert (basic.method, post.method) == ("client_secret_basic", "client_secret_post")


def test_wrong_secret_is_refused_and_audited(db, consent, ctx, town: Town):
    client = town.clients["inkomen"]
    reason = refused(db, consent, ctx, ClientCredentials(basic=(client.client_id, "wrong")))
    assert reason == "wrong_secret"
    [row] = auth_failures(db, town)
    assert row["client_id"] == client.client_id and row["reason"] == "wrong_secret"
    assert "wrong" not in json.dumps(row, default=str).replace("wrong_secret", "")


def test_unknown_client_is_refused(db, consent, ctx, town: Town):
    assert refused(db, consent, ctx, ClientCredentials(basic=("0" * 32, "x"))) == "unknown_client"
    assert refused(db, consent, ctx, ClientCredentials(basic=("../../etc", "x"))) == "unknown_client"
    assert auth_failures(db, town) == []  # no tenant to audit it in: logged only


def test_one_method_per_request(db, consent, ctx, town: Town):
    client = town.clients["inkomen"]
    both = ClientCredentials(basic=(client.client_id, "x"), client_secret="y", client_id=client.client_id)
    with pytest.raises(InvalidRequestError):
        authenticate(db, consent, ctx, both)
    assert refused(db, consent, ctx, ClientCredentials()) == "no_client_authentication"


def test_secrets_are_refused_in_production(db, consent, ctx, town: Town, vault):
    production = ClientService(
        OAuthConfig(issuer=ISSUER, base_url=ISSUER, production=True, allow_client_secret=False)
    )
    client = town.clients["inkomen"]
    with db.session() as s, pytest.raises(InvalidClientError) as caught:
        production.authenticate(
            s, ctx(), ClientCredentials(basic=(client.client_id, town.secrets["inkomen"]))
        )
    assert caught.value.reason == "client_secret_refused_in_production"
    with db.session() as s, pytest.raises(NotAllowedError):
        production.create(s, ctx(), town.tenant, "inkomen", secret=True)


def test_secrets_are_stored_hashed(db, consent, town: Town):
    from consent.models import Client

    with db.read_session() as s:
        row = s.get(Client, town.clients["inkomen"].client_id)
        assert row is not None and row.secret_hash is not None
        assert town.secrets["inkomen"].encode() not in row.secret_hash and len(row.secret_hash) == 32


# -- private_key_jwt --------------------------------------------------------------------------------
def test_private_key_jwt(db, consent, ctx, jwt_client: str, key: ECKey):
    found = authenticate(db, consent, ctx, with_assertion(assertion(jwt_client, key)))
    assert found.client_id == jwt_client and found.method == "private_key_jwt"
    # The issuer itself and the endpoint called are acceptable audiences too (RFC 7523 §3).
    authenticate(db, consent, ctx, with_assertion(assertion(jwt_client, key, audience=ISSUER)))
    called = ClientCredentials(
        assertion_type=ASSERTION_TYPE,
        assertion=assertion(jwt_client, key, audience=ISSUER + "/oauth/bc-authorize"),
        endpoint=ISSUER + "/oauth/bc-authorize",
    )
    authenticate(db, consent, ctx, called)


def test_a_replayed_assertion_is_refused(db, consent, ctx, town, jwt_client: str, key: ECKey):
    value = assertion(jwt_client, key)
    authenticate(db, consent, ctx, with_assertion(value))
    assert refused(db, consent, ctx, with_assertion(value)) == "assertion_replayed"
    [row] = auth_failures(db, town)
    assert row["reason"] == "assertion_replayed" and row["client_id"] == jwt_client


def test_an_assertion_replayed_after_its_exp_but_within_the_leeway_is_refused(
    db, consent, ctx, town, jwt_client: str, key: ECKey, clock: Clock
):
    now = int(clock().timestamp())
    value = assertion(jwt_client, key, issued_at=now, expires_at=now + 30)
    authenticate(db, consent, ctx, with_assertion(value))
    clock.advance(seconds=45)  # past its exp, but the check allows a minute's leeway after it
    assert refused(db, consent, ctx, with_assertion(value)) == "assertion_replayed"


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{enc(json.dumps(header).encode())}.{enc(json.dumps(claims).encode())}.{enc(signature)}"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_audience", "assertion_wrong_audience"),
        ("expired", "assertion_expired"),
        ("wrong_key", "assertion_bad_signature"),
        ("unknown_kid", "assertion_unknown_key"),
        ("alg_none", "assertion_algorithm_not_allowed"),
        ("hs256_with_public_key", "assertion_algorithm_not_allowed"),
        ("embedded_jwk", "assertion_header_not_allowed"),
        ("other_issuer", "assertion_wrong_client"),
        ("too_long_lived", "assertion_lifetime_too_long"),
        ("fractional_exp", "assertion_malformed"),
        ("far_fractional_exp", "assertion_malformed"),
        ("garbage", "assertion_malformed"),
    ],
)
def test_bad_assertions_are_refused_and_audited(
    db, consent, ctx, town, jwt_client, key, clock: Clock, case, reason
):
    now = int(clock().timestamp())
    other = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    claims = {
        "iss": jwt_client,
        "sub": jwt_client,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 60,
        "jti": case,
    }
    value = {
        "wrong_audience": lambda: assertion(jwt_client, key, audience="https://elsewhere.example/token"),
        "expired": lambda: assertion(jwt_client, key, issued_at=now - 900, expires_at=now - 600),
        "wrong_key": lambda: assertion(jwt_client, other),
        "unknown_kid": lambda: assertion(jwt_client, key, header={"kid": "k2"}),
        "alg_none": lambda: forge({"alg": "none", "kid": "k1"}, claims),
        "hs256_with_public_key": lambda: assertion(
            jwt_client,
            OctKey.import_key(json.dumps(key.as_dict(private=False)).encode()),
            alg="HS256",
            header={"kid": "k1"},
        ),
        "embedded_jwk": lambda: assertion(
            jwt_client, other, header={"kid": "k1", "jwk": other.as_dict(private=False)}
        ),
        "other_issuer": lambda: assertion(jwt_client, key, claims={"iss": "someone-else"}),
        "too_long_lived": lambda: assertion(jwt_client, key, expires_at=now + 86400),
        # Not whole seconds: refused (it escaped the lifetime cap and outlived its replay record).
        "fractional_exp": lambda: assertion(jwt_client, key, claims={"exp": now + 30.5}),
        "far_fractional_exp": lambda: assertion(jwt_client, key, claims={"exp": now + 315_360_000.5}),
        "garbage": lambda: "not.a.jwt",
    }[case]()
    assert refused(db, consent, ctx, with_assertion(value, client_id=jwt_client)) == reason
    [row] = auth_failures(db, town)
    assert row["reason"] == reason


def test_an_assertion_for_a_secret_client_is_refused(db, consent, ctx, town, key):
    client_id = town.clients["inkomen"].client_id
    assert refused(db, consent, ctx, with_assertion(assertion(client_id, key))) == "wrong_auth_method"


def test_a_jwt_client_cannot_use_a_secret(db, consent, ctx, jwt_client):
    assert refused(db, consent, ctx, ClientCredentials(basic=(jwt_client, ""))) == "wrong_auth_method"


def test_jwks_url_with_key_rotation(db, consent, ctx, town, key: ECKey):
    published: dict[str, Any] = {"keys": [key.as_dict(private=False)]}
    fetched: list[str] = []

    def fetch(url: str) -> Any:
        fetched.append(url)
        return published

    consent.clients.jwks_cache._fetcher = fetch
    with db.session() as s:
        row, _ = consent.clients.create(
            s, ctx(), town.tenant, "inkomen", jwks_uri="https://dept.example/jwks"
        )
    authenticate(db, consent, ctx, with_assertion(assertion(row.id, key)))
    authenticate(db, consent, ctx, with_assertion(assertion(row.id, key)))
    assert fetched == ["https://dept.example/jwks"]  # cached
    new = ECKey.generate_key("P-256", parameters={"kid": "k2"})
    published["keys"] = [new.as_dict(private=False)]
    consent.clients.jwks_cache._refetch_after = 0
    authenticate(db, consent, ctx, with_assertion(assertion(row.id, new)))  # unknown kid: fetched again
    assert len(fetched) == 2

    def broken(url: str) -> Any:
        raise OSError("down")

    consent.clients.jwks_cache._fetcher = broken
    consent.clients.jwks_cache._entries.clear()
    assert refused(db, consent, ctx, with_assertion(assertion(row.id, new))) == "jwks_uri_unavailable"


@pytest.mark.parametrize(
    "document",
    [
        None,
        {"keys": []},
        {"keys": "no"},
        {"keys": [ECKey.generate_key("P-256").as_dict(private=True)]},
        {"keys": [OctKey.generate_key(256).as_dict(private=True)]},
        {"keys": [json.loads(jwcrypto_jwk.JWK.generate(kty="RSA", size=1024).export_public())]},
        {"keys": [{"kty": "EC", "crv": "P-256", "x": "bad", "y": "bad"}]},
        {"keys": [dict(ECKey.generate_key("P-256").as_dict(private=False), use="enc")]},
        {"keys": [ECKey.generate_key("P-256", parameters={"kid": "a"}).as_dict(private=False)] * 2},
    ],
)
def test_bad_jwks_are_refused(db, consent, ctx, town, document):
    with db.session() as s, pytest.raises(InvalidClientConfigError):
        consent.clients.create(s, ctx(), town.tenant, "inkomen", jwks=document or {"nokeys": 1})


def test_rsa_keys_are_fine(db, consent, ctx, town):
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"})
    with db.session() as s:
        row, _ = consent.clients.create(
            s, ctx(), town.tenant, "inkomen", jwks={"keys": [rsa.as_dict(private=False)]}
        )
    authenticate(db, consent, ctx, with_assertion(assertion(row.id, rsa, alg="PS256")))


def test_registration_needs_exactly_one_method(db, consent, ctx, town, key):
    for kwargs in ({}, {"secret": True, "jwks_uri": "https://x.example/jwks"}):
        with db.session() as s, pytest.raises(InvalidClientConfigError):
            consent.clients.create(s, ctx(), town.tenant, "inkomen", **kwargs)
    with db.session() as s, pytest.raises(InvalidClientConfigError):
        consent.clients.create(s, ctx(), town.tenant, "inkomen", jwks_uri="ftp://x.example/jwks")
    with db.session() as s:
        row, _ = consent.clients.create(
            s, ctx(), town.tenant, "jeugdzorg", jwks={"keys": [key.as_dict(private=False)]}, dpop=True
        )
    assert row.dpop_bound is True
    created = [r for r in audit_rows(db, town.tenant.id) if r["name"] == "consent:client:created"]
    assert len(created) == 3  # two from the town, one here
