"""The vault's JWTs: what a verifier must refuse (none, HMAC with the public key, embedded keys,
critical headers, oversized, wrong type, issuer, audience, expired, unknown or retired keys).

Pure token checks: one database (SQLite) is enough; the storage-backed flow runs on both."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from jwcrypto import jwk, jws

from consent.errors import InvalidTokenError
from consent.resource import Refusal
from consent.schemas import VerifiedToken
from consent.services import ConsentServices
from consent.tokens import ACCESS_TYP, USER_TYP, ClaimsCache
from kluis.db import Database
from tests.conftest import Clock
from tests.consent.conftest import ISSUER


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    database.migrate()
    yield database
    database.dispose()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def claims_at(clock: Clock, **overrides: Any) -> dict[str, Any]:
    iat = int(clock().timestamp())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ISSUER + "/api/v1",
        "sub": "pairwise",
        "client_id": "c1",
        "tenant": "t1",
        "jti": "j1",
        "iat": iat,
        "exp": iat + 300,
        "authorization_details": [{"type": "kluis:records", "grant_id": "g1", "resident_id": "r1"}],
    }
    claims.update(overrides)
    return claims


def sign(
    db: Database, consent: ConsentServices, clock: Clock, claims: dict[str, Any], typ: str = ACCESS_TYP
) -> str:
    with db.session() as s:
        token = consent.tokens.sign(s, claims, typ, clock())
        s.commit()
    return token


def verify(db: Database, consent: ConsentServices, clock: Clock, token: str):
    with db.read_session() as s:
        return consent.tokens.verify_access_token(s, token, clock())


def refused(db, consent, clock, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        verify(db, consent, clock, token)
    return caught.value.reason


def current_kid(db: Database, consent: ConsentServices) -> str:
    with db.read_session() as s:
        row = consent.tokens.signing.active(s, "token")
        assert row is not None
        return row.kid


def test_a_good_token_verifies_and_is_cached(db, consent, clock):
    token = sign(db, consent, clock, claims_at(clock))
    first = verify(db, consent, clock, token)
    assert (first.client_id, first.grant_id, first.resident_id, first.tenant_id) == ("c1", "g1", "r1", "t1")
    assert len(consent.tokens.cache) == 1
    assert verify(db, consent, clock, token) is first
    clock.advance(seconds=300)
    assert refused(db, consent, clock, token) == "token_expired"  # the cache keeps nothing past exp


def forged(db, consent, clock, kind: str) -> str:
    kid = current_kid(db, consent)
    claims = claims_at(clock)
    if kind == "alg_none":
        return compact({"alg": "none", "typ": ACCESS_TYP, "kid": kid}, claims)
    if kind == "hs256_with_public_key":
        with db.read_session() as s:
            public = jwk.JWK(**consent.tokens.public_jwks(s, clock())["keys"][0])
        secret = public.export_to_pem()
        head = b64(json.dumps({"alg": "HS256", "typ": ACCESS_TYP, "kid": kid}).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(mac)}"
    attacker = jwk.JWK.generate(kty="EC", crv="P-256")
    header: dict[str, Any] = {"alg": "ES256", "typ": ACCESS_TYP, "kid": kid}
    if kind == "embedded_jwk":
        header["jwk"] = json.loads(attacker.export_public())
    elif kind == "jku":
        header["jku"] = "https://attacker.example/jwks.json"
    elif kind == "x5u":
        header["x5u"] = "https://attacker.example/cert.pem"
    elif kind == "crit":  # jwcrypto will not even sign this; the verifier must refuse it unread
        return compact({**header, "crit": ["exp"], "exp": 1}, claims, b"\x00" * 64)
    elif kind == "other_key_same_kid":
        pass
    elif kind == "unknown_kid":
        header["kid"] = "token-19700101-deadbeef"
    obj = jws.JWS(json.dumps(claims).encode())
    obj.add_signature(attacker, alg="ES256", protected=json.dumps(header))
    return str(obj.serialize(compact=True))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("alg_none", "algorithm_not_allowed"),
        ("hs256_with_public_key", "algorithm_not_allowed"),
        ("embedded_jwk", "header_not_allowed"),
        ("jku", "header_not_allowed"),
        ("x5u", "header_not_allowed"),
        ("crit", "header_not_allowed"),
        ("other_key_same_kid", "bad_signature"),
        ("unknown_kid", "unknown_key"),
    ],
)
def test_forged_tokens_are_refused(db, consent, clock, kind, reason):
    sign(db, consent, clock, claims_at(clock))  # a real key exists
    assert refused(db, consent, clock, forged(db, consent, clock, kind)) == reason


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "wrong_issuer"),
        ({"aud": ISSUER + "/api/v1/me"}, "wrong_audience"),
        ({"aud": "https://other.example/api/v1"}, "wrong_audience"),
        ({"exp": 1}, "token_expired"),
        ({"iat": 10**10}, "token_not_yet_valid"),
        ({"nbf": 10**10}, "token_not_yet_valid"),
        ({"exp": "never"}, "token_malformed"),
        ({"authorization_details": []}, "token_malformed"),
        ({"client_id": None}, "token_malformed"),
    ],
)
def test_claims_are_checked(db, consent, clock, overrides, reason):
    assert refused(db, consent, clock, sign(db, consent, clock, claims_at(clock, **overrides))) == reason


def test_a_user_token_is_not_an_access_token_and_back(db, consent, clock):
    with db.session() as s:
        user = consent.tokens.issue_user_token(s, role="resident", tenant_id="t1", subject="r1", now=clock())
        s.commit()
    assert refused(db, consent, clock, user) == "wrong_token_type"
    access = sign(db, consent, clock, claims_at(clock))
    with db.read_session() as s:
        with pytest.raises(InvalidTokenError):
            consent.guard.resident(s, access, clock())
        assert consent.guard.resident(s, user, clock()).resident_id == "r1"
        with pytest.raises(InvalidTokenError) as caught:
            consent.guard.privacy_officer(s, user, clock())  # a resident is not a privacy officer
    assert caught.value.reason == "wrong_role"
    officer_claims = {
        "iss": ISSUER,
        "aud": ISSUER + "/api/v1/me",
        "sub": "fg",
        "tenant": "t1",
        "role": "privacy_officer",
    }
    officer = sign(db, consent, clock, claims_at(clock, **officer_claims), typ=USER_TYP)
    with db.read_session() as s:
        assert consent.guard.privacy_officer(s, officer, clock()).subject == "fg"


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "ä.b.c", "!!!.b.c", "x" * 5000])
def test_garbage_is_refused_without_errors(db, consent, clock, token):
    refused(db, consent, clock, token)


def test_oversized_tokens_are_refused_unread(db, consent, clock):
    token = sign(db, consent, clock, claims_at(clock, padding="x" * 5000))
    assert refused(db, consent, clock, token) == "token_too_large"


def test_rotation_keeps_old_tokens_valid_for_one_lifetime(db, consent, clock, ctx):
    old = sign(db, consent, clock, claims_at(clock))
    old_kid = current_kid(db, consent)
    with db.session() as s:
        consent.oauth.rotate_signing_key(s, ctx())
    new = sign(db, consent, clock, claims_at(clock, jti="j2"))
    assert current_kid(db, consent) != old_kid
    consent.tokens.cache = ClaimsCache()  # verify afresh, as another node would
    consent.tokens.ring._loaded_at = float("-inf")
    verify(db, consent, clock, old)
    verify(db, consent, clock, new)
    with db.read_session() as s:
        assert {k["kid"] for k in consent.tokens.public_jwks(s, clock())["keys"]} == {
            old_kid,
            current_kid(db, consent),
        }
    clock.advance(seconds=359)
    longer = sign(db, consent, clock, claims_at(clock, jti="j3"))
    clock.advance(seconds=2)  # past the overlap: the retired key is refused and no longer published
    consent.tokens.cache = ClaimsCache()
    assert refused(db, consent, clock, old) == "unknown_key"
    forged_old = compact({"alg": "ES256", "typ": ACCESS_TYP, "kid": old_kid}, claims_at(clock, jti="j4"))
    assert refused(db, consent, clock, forged_old) == "unknown_key"
    verify(db, consent, clock, longer)
    with db.read_session() as s:
        assert [k["kid"] for k in consent.tokens.public_jwks(s, clock())["keys"]] == [
            current_kid(db, consent)
        ]


def test_a_refusal_names_the_client_only_for_the_audit(db, consent, clock):
    sign(db, consent, clock, claims_at(clock))
    token = forged(db, consent, clock, "alg_none")
    with db.read_session() as s:
        refusal = consent.guard.check(s, token, clock())
    assert isinstance(refusal, Refusal) and not refusal.verified and refusal.client_id == "c1"
    assert refusal.tenant_id is None and refusal.grant_id is None


def test_the_claims_cache_is_bounded():
    cache = ClaimsCache(max_entries=3)
    for n in range(5):
        cache.put(str(n), VerifiedToken(str(n), "c", "t", "g", "r", "s", 0, 100, {}))
    assert len(cache) == 3 and cache.get("0", 1) is None and cache.get("4", 1) is not None
    assert cache.get("4", 100) is None


def test_sign_never_commits_the_callers_transaction(db, consent, clock):
    """``sign`` may create the first key, but inside the caller's unit of work."""
    with db.session() as s:
        consent.tokens.sign(s, claims_at(clock), ACCESS_TYP, clock())
        s.rollback()
    with db.read_session() as s:
        assert consent.tokens.signing.active(s, "token") is None
