"""``private_key_jwt`` client assertions (RFC 7523 §2.2 / §3), checked with authlib.

authlib's ``JWTBearerClientAssertion`` supplies the parsing and the claim rules (``iss`` = ``sub``,
``aud`` one of ours, ``exp``, ``jti`` present and unused); we add what a pinned verification needs
and authlib leaves open: a size limit, a header allow-list (no ``jwk``/``jku``/``x5u``/``x5c``/
``crit``), an algorithm allow-list, exactly one registered key chosen by ``kid``, and a bounded
lifetime, since the ``jti`` of every accepted assertion is kept in the database until it expires.
authlib checks the times against the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key

from consent.errors import InvalidClientError

MAX_ASSERTION_BYTES = 8192
FORBIDDEN_HEADER = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64"})
# Asymmetric only: a shared-secret (HS*) assertion would need the secret stored readable.
ALGORITHMS: dict[str, frozenset[str]] = {
    "ES256": frozenset({"EC"}),
    "ES384": frozenset({"EC"}),
    "PS256": frozenset({"RSA"}),
    "RS256": frozenset({"RSA"}),
    "EdDSA": frozenset({"OKP"}),
}
MAX_LIFETIME = 3600 + 60  # authlib's own signer makes assertions valid for an hour
LEEWAY = 60


class _Verifier(JWTBearerClientAssertion):  # type: ignore[misc]  # authlib is untyped
    def __init__(self, audiences: list[str], remember_jti: Callable[[str, int], bool]) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self._audiences = audiences
        self._remember = remember_jti
        self.expires_at = 0

    def get_audiences(self) -> list[str]:
        return self._audiences

    def validate_jti(self, claims: dict[str, Any], jti: object) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 255:
            return False
        self.expires_at = int(claims["exp"])
        return self._remember(jti, self.expires_at)


def unverified_subject(assertion: str) -> str | None:
    """The ``sub`` an assertion claims (to find the client whose key must verify it)."""
    if not isinstance(assertion, str) or len(assertion) > MAX_ASSERTION_BYTES:
        return None
    try:
        _headers, claims = _Verifier([], lambda _j, _e: False).extract_assertion(assertion)
    except OAuth2Error:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) and 0 < len(sub) <= 64 else None


def verify_assertion(
    assertion: str,
    *,
    client_id: str,
    keys: list[dict[str, Any]],
    audiences: list[str],
    now: int,
    remember_jti: Callable[[str, int], bool],
) -> None:
    """Check a client assertion for ``client_id`` against its registered public ``keys``.

    ``remember_jti(jti, exp)`` stores the id and answers False when it was used before.
    Raises ``InvalidClientError`` with a reason code; returns nothing on success.
    """
    if len(assertion) > MAX_ASSERTION_BYTES:
        raise InvalidClientError("assertion_too_large")
    verifier = _Verifier(audiences, remember_jti)
    try:
        header, claims = verifier.extract_assertion(assertion)
    except OAuth2Error:
        raise InvalidClientError("assertion_malformed") from None
    if not isinstance(header, dict) or FORBIDDEN_HEADER & set(header):
        raise InvalidClientError("assertion_header_not_allowed")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise InvalidClientError("assertion_algorithm_not_allowed")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClientError("assertion_wrong_client")
    key_data = _choose_key(keys, header.get("kid"), alg)
    try:
        key = import_key(key_data)
        token = jwt.decode(assertion, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError):
        raise InvalidClientError("assertion_bad_signature") from None
    exp = token.claims.get("exp")
    # A whole number of seconds (RFC 7519 NumericDate, as every client library writes it): the
    # replay store keeps ids until exp plus the leeway, in whole seconds, and the lifetime cap
    # must see every exp (a fractional one slipped past both).
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise InvalidClientError("assertion_malformed")
    if exp - now > MAX_LIFETIME:
        raise InvalidClientError("assertion_lifetime_too_long")
    try:
        verifier.verify_claims(token.claims)
    except OAuth2Error as exc:
        description = str(getattr(exc, "description", "") or "")
        raise InvalidClientError(_reason(description)) from None


def _choose_key(keys: list[dict[str, Any]], kid: object, alg: str) -> dict[str, Any]:
    candidates = [k for k in keys if k.get("kty") in ALGORITHMS[alg] and k.get("alg") in (None, alg)]
    if isinstance(kid, str):
        candidates = [k for k in candidates if k.get("kid") == kid]
    elif len(candidates) != 1:
        candidates = []  # without a kid only an unambiguous single key will do
    if len(candidates) != 1:
        raise InvalidClientError("assertion_unknown_key")
    return candidates[0]


def _reason(description: str) -> str:
    text = description.lower()
    if "used before" in text:
        return "assertion_replayed"
    if "aud" in text:
        return "assertion_wrong_audience"
    if "expired" in text or "exp" in text:
        return "assertion_expired"
    return "assertion_invalid_claims"
