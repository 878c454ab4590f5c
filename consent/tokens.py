"""The vault's own JWTs: access tokens (RFC 9068, ``at+jwt``) and resident / privacy-officer tokens.

Signing goes through ``vault.signing`` (jwcrypto, or the HSM when the keys live there);
verification uses jwcrypto with the vault's ES256 public keys and pins everything: the token size,
the header members (``alg``, ``kid``, ``typ`` and nothing else, so no ``jwk``/``jku``/``x5u``/
``x5c``/``crit``), the algorithm (ES256 only: never ``none``, never HMAC), the key (by ``kid``, from
the database), the type, issuer, audience and times. Every failure is one ``InvalidTokenError``
with a reason code for the audit log.

Verifying with jwcrypto costs ~0.3 ms, so verified access-token claims are cached, keyed by the
token's SHA-256, until the token's ``exp``; the *grant* is still checked in the database on every
request (``consent.oauth``), so the cache never delays a revocation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from jwcrypto import jwk, jws
from jwcrypto.common import JWException, json_encode
from sqlmodel import Session, col, select

from consent.errors import InvalidTokenError
from consent.schemas import OAuthConfig, UserClaims, VerifiedToken
from vault.models import SigningKey
from vault.signing import SigningKeyService

ALG = "ES256"
ACCESS_TYP = "at+jwt"
USER_TYP = "kluis-user+jwt"
MAX_TOKEN_BYTES = 4096  # ours are about 1 KiB; anything far larger is refused unread
ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
CLOCK_SKEW = 60  # seconds tolerated for iat/nbf in the future
KEY_RELOAD_SECONDS = 60.0  # re-read the key list this often, and at most once a second on an unknown kid


def b64url_json(segment: str) -> Any:
    """Decode one base64url JWT segment as JSON, or raise ``ValueError``."""
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        return json.loads(raw)
    except (binascii.Error, UnicodeError, json.JSONDecodeError) as exc:
        raise ValueError("not base64url JSON") from exc


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def peek_claims(token: str) -> dict[str, Any] | None:
    """The *unverified* claims of a compact JWT, only to attribute a refused token to a client."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        claims = b64url_json(token.split(".")[1])
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


class ClaimsCache:
    """A bounded LRU of verified access tokens, each kept until its ``exp`` (thread-safe)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: str, now: int) -> VerifiedToken | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now >= found.expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found

    def put(self, key: str, value: VerifiedToken) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class KeyRing:
    """The public token keys by ``kid``, read from the database (every node sees the same keys).

    A key is accepted while it is active, and for ``overlap`` after it was retired by a rotation,
    so tokens signed just before a rotation stay valid until they expire.
    """

    def __init__(self, overlap: timedelta) -> None:
        self.overlap = overlap
        self._keys: dict[str, tuple[jwk.JWK, datetime | None]] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def load(self, session: Session) -> None:
        rows = session.exec(select(SigningKey).where(SigningKey.purpose == "token")).all()
        keys = {}
        for row in rows:
            if row.alg != ALG:
                continue
            keys[row.kid] = (jwk.JWK.from_json(row.public_jwk), row.retired_at)
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()

    def key(self, session: Session, kid: str, now: datetime) -> jwk.JWK | None:
        age = time.monotonic() - self._loaded_at
        if age > KEY_RELOAD_SECONDS or (kid not in self._keys and age > 1.0):
            self.load(session)
        found = self._keys.get(kid)
        if found is None:
            return None
        key, retired_at = found
        if retired_at is not None and now > retired_at + self.overlap:
            return None
        return key

    def accepted(self, session: Session, now: datetime) -> list[SigningKey]:
        """The key rows a verifier accepts at ``now`` (what ``/.well-known/jwks.json`` publishes)."""
        rows = session.exec(
            select(SigningKey).where(SigningKey.purpose == "token").order_by(col(SigningKey.created_at))
        ).all()
        return [r for r in rows if r.retired_at is None or now <= r.retired_at + self.overlap]


class TokenService:
    """Signs and verifies the vault's JWTs. Holds only caches; the keys live in the database."""

    def __init__(self, signing: SigningKeyService, config: OAuthConfig, *, cache_size: int = 10_000) -> None:
        self.signing = signing
        self.config = config
        # Tokens live at most access_token_lifetime; a minute more covers clock skew between nodes.
        self.ring = KeyRing(timedelta(seconds=config.access_token_lifetime + CLOCK_SKEW))
        self.cache = ClaimsCache(cache_size)

    # -- signing ----------------------------------------------------------------------------------
    def sign(self, session: Session, claims: Mapping[str, Any], typ: str, now: datetime) -> str:
        # Never ``ensure`` here: it commits, and the caller's transaction must commit as one.
        row = self.signing.active(session, "token") or self.signing.create(session, "token", now)
        # The JSON jwcrypto's JWT would write (sorted keys, no spaces); the key may live in an HSM.
        header = json_encode({"alg": ALG, "typ": typ, "kid": row.kid})
        return self.signing.sign_jws(row, header, json_encode(dict(claims)).encode())

    def issue_user_token(
        self,
        session: Session,
        *,
        role: Literal["resident", "privacy_officer"],
        tenant_id: str,
        subject: str,
        now: datetime,
        lifetime: int = 900,
    ) -> str:
        """A bearer token for the resident API (``role="resident"``, subject = resident id) or the
        audit API (``role="privacy_officer"``). Used by ``kluis dev-token`` and the portal login."""
        iat = int(now.timestamp())
        claims = {
            "iss": self.config.issuer,
            "aud": self.config.user_audience,
            "sub": subject,
            "tenant": tenant_id,
            "role": role,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": secrets.token_urlsafe(16),
        }
        return self.sign(session, claims, USER_TYP, now)

    # -- verification -----------------------------------------------------------------------------
    def decode(
        self, session: Session, token: str, *, typ: str, audience: str, now: datetime
    ) -> dict[str, Any]:
        """Verify ``token`` completely and return its claims, or raise ``InvalidTokenError``."""
        if not isinstance(token, str) or not token:
            raise InvalidTokenError("token_missing")
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidTokenError("token_too_large")
        if not token.isascii() or token.count(".") != 2:
            raise InvalidTokenError("token_malformed")
        try:
            header = b64url_json(token.split(".", 1)[0])
        except ValueError:
            raise InvalidTokenError("token_malformed") from None
        if not isinstance(header, dict):
            raise InvalidTokenError("token_malformed")
        if not set(header) <= ALLOWED_HEADER:
            raise InvalidTokenError("header_not_allowed")  # jwk, jku, x5u, x5c, crit, b64...
        if header.get("alg") != ALG:
            raise InvalidTokenError("algorithm_not_allowed")
        if not _typ_matches(header.get("typ"), typ):
            raise InvalidTokenError("wrong_token_type")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidTokenError("unknown_key")
        key = self.ring.key(session, kid, now)
        if key is None:
            raise InvalidTokenError("unknown_key")
        try:
            obj = jws.JWS()
            obj.deserialize(token)
            obj.verify(key, alg=ALG)
            claims = json.loads(obj.payload)
        except (JWException, ValueError, TypeError):
            raise InvalidTokenError("bad_signature") from None
        if not isinstance(claims, dict):
            raise InvalidTokenError("token_malformed")
        _check_times_and_parties(claims, self.config.issuer, audience, int(now.timestamp()))
        return claims

    def cached_access_token(self, token: str, now: datetime) -> VerifiedToken | None:
        """The verified claims of ``token`` if it was verified before and has not expired."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            return None
        return self.cache.get(token_hash(token), int(now.timestamp()))

    def verify_access_token(self, session: Session, token: str, now: datetime) -> VerifiedToken:
        """An access token of this server for the data API; cached until its ``exp``."""
        key = token_hash(token) if isinstance(token, str) and len(token) <= MAX_TOKEN_BYTES else ""
        epoch = int(now.timestamp())
        if key:
            cached = self.cache.get(key, epoch)
            if cached is not None:
                return cached
        claims = self.decode(session, token, typ=ACCESS_TYP, audience=self.config.resource, now=now)
        verified = _access_claims(claims)
        self.cache.put(key, verified)
        return verified

    def verify_user_token(
        self, session: Session, token: str, role: Literal["resident", "privacy_officer"], now: datetime
    ) -> UserClaims:
        claims = self.decode(session, token, typ=USER_TYP, audience=self.config.user_audience, now=now)
        sub, tenant = claims.get("sub"), claims.get("tenant")
        if claims.get("role") != role:
            raise InvalidTokenError("wrong_role")
        if not isinstance(sub, str) or not sub or not isinstance(tenant, str) or not tenant:
            raise InvalidTokenError("token_malformed")
        return UserClaims(role=role, tenant_id=tenant, subject=sub, expires_at=int(claims["exp"]))

    def public_jwks(self, session: Session, now: datetime) -> dict[str, list[dict[str, Any]]]:
        return {"keys": [json.loads(r.public_jwk) for r in self.ring.accepted(session, now)]}


def _typ_matches(found: object, wanted: str) -> bool:
    # RFC 9068 §4: "at+jwt" or "application/at+jwt", compared case-insensitively.
    if not isinstance(found, str):
        return False
    value = found.lower()
    return value in (wanted, "application/" + wanted)


def _check_times_and_parties(claims: dict[str, Any], issuer: str, audience: str, now: int) -> None:
    if claims.get("iss") != issuer:
        raise InvalidTokenError("wrong_issuer")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise InvalidTokenError("wrong_audience")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat, nbf)):
        raise InvalidTokenError("token_malformed")
    assert isinstance(exp, int) and isinstance(iat, int) and isinstance(nbf, int)
    if now >= exp:
        raise InvalidTokenError("token_expired")
    if iat > now + CLOCK_SKEW or nbf > now + CLOCK_SKEW:
        raise InvalidTokenError("token_not_yet_valid")
    if not isinstance(claims.get("jti"), str):
        raise InvalidTokenError("token_malformed")


def _access_claims(claims: dict[str, Any]) -> VerifiedToken:
    details = claims.get("authorization_details")
    detail = details[0] if isinstance(details, list) and len(details) == 1 else None
    if not isinstance(detail, dict):
        raise InvalidTokenError("token_malformed")
    values = (
        claims.get("client_id"),
        claims.get("tenant"),
        detail.get("grant_id"),
        detail.get("resident_id"),
        claims.get("sub"),
    )
    if not all(isinstance(v, str) and v for v in values):
        raise InvalidTokenError("token_malformed")
    client_id, tenant_id, grant_id, resident_id, subject = (str(v) for v in values)
    return VerifiedToken(
        jti=str(claims["jti"]),
        client_id=client_id,
        tenant_id=tenant_id,
        grant_id=grant_id,
        resident_id=resident_id,
        subject=subject,
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
        claims=claims,
    )
