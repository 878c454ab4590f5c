"""Clients' public keys: validating a registered JWKS, and a cache for JWKS published at a URL.

Fetching a URL is outbound HTTP, which ``consent`` never does itself: the shell injects a
``JwksFetcher`` (``kluis.wiring`` uses httpx). Fetched key sets are cached per URL for a while and
re-fetched early, at most every ``refetch_after`` seconds, when an assertion names an unknown ``kid``
(the client rotated its keys). The cache holds public keys only: losing it costs one fetch.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

from jwcrypto import jwk
from jwcrypto.common import JWException

from consent.errors import InvalidClientConfigError, InvalidClientError

PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
EC_CURVES = frozenset({"P-256", "P-384", "P-521"})
MIN_RSA_BITS = 2048
MAX_KEYS = 10


class JwksFetcher(Protocol):
    def __call__(self, url: str) -> Any:
        """The JSON document at ``url``; raises any exception when it cannot be had."""


def validate_jwks(document: Any) -> list[dict[str, Any]]:
    """The signing keys of a public JWKS, or ``InvalidClientConfigError`` naming what is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise InvalidClientConfigError("a JWKS is a JSON object with a 'keys' list")
    keys = document["keys"]
    if not 1 <= len(keys) <= MAX_KEYS:
        raise InvalidClientConfigError(f"a JWKS needs 1 to {MAX_KEYS} keys")
    out: list[dict[str, Any]] = []
    kids: set[str] = set()
    for number, key in enumerate(keys, start=1):
        public = _public_key(number, key)
        kid = public.get("kid")
        if kid is not None:
            if kid in kids:
                raise InvalidClientConfigError(f"key {number}: 'kid' must be unique")
            kids.add(kid)
        out.append(public)
    return out


def _public_key(number: int, key: Any) -> dict[str, Any]:
    """One JWKS member checked: a public signing key of a supported type and size."""
    if not isinstance(key, dict):
        raise InvalidClientConfigError(f"key {number} is not a JSON object")
    if PRIVATE_MEMBERS & set(key):
        raise InvalidClientConfigError(f"key {number} contains private key material; register public keys")
    if key.get("use", "sig") != "sig":
        raise InvalidClientConfigError(f"key {number} is not a signing key")
    try:
        parsed = jwk.JWK(**key)
        parsed.get_op_key("verify")  # loads the key: a point off the curve, a bad modulus fail here
    except (JWException, ValueError, TypeError):
        raise InvalidClientConfigError(f"key {number} is not a valid JWK") from None
    kty, crv = key.get("kty"), key.get("crv")
    problem = {
        "EC": None if crv in EC_CURVES else "EC keys must use P-256, P-384 or P-521",
        "RSA": None if _rsa_bits(parsed) >= MIN_RSA_BITS else f"RSA keys need at least {MIN_RSA_BITS} bits",
        "OKP": None if crv == "Ed25519" else "OKP keys must be Ed25519",
    }.get(str(kty), "only EC, RSA and OKP keys can sign assertions")
    if problem is not None:
        raise InvalidClientConfigError(f"key {number}: {problem}")
    kid = key.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidClientConfigError(f"key {number}: 'kid' must be a string")
    public: dict[str, Any] = json.loads(parsed.export_public())
    return public | ({"kid": kid} if kid else {}) | _alg(key)


def _alg(key: dict[str, Any]) -> dict[str, Any]:
    return {"alg": key["alg"]} if isinstance(key.get("alg"), str) else {}


def _rsa_bits(key: jwk.JWK) -> int:
    if key.get("kty") != "RSA":
        return 0
    size: int = key.get_op_key("verify").key_size
    return size


class JwksCache:
    """Fetched JWKS per URL with a time to live (thread-safe, bounded)."""

    def __init__(
        self,
        fetcher: JwksFetcher | None,
        *,
        ttl: float = 300.0,
        refetch_after: float = 30.0,
        max_urls: int = 1000,
    ) -> None:
        self._fetcher = fetcher
        self._ttl = ttl
        self._refetch_after = refetch_after
        self._max = max_urls
        self._entries: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, kid: str | None) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            fetched_at, keys = entry
            fresh = now - fetched_at < self._ttl
            kid_known = kid is None or any(k.get("kid") == kid for k in keys)
            if fresh and (kid_known or now - fetched_at < self._refetch_after):
                return keys
        keys = self._fetch(url)
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[url] = (now, keys)
        return keys

    def _fetch(self, url: str) -> list[dict[str, Any]]:
        if self._fetcher is None:
            raise InvalidClientError("jwks_uri_unavailable")
        try:
            document = self._fetcher(url)
            return validate_jwks(document)
        except InvalidClientConfigError:
            raise InvalidClientError("jwks_uri_invalid") from None
        except Exception:  # noqa: BLE001 - any network or parse failure: the client cannot be verified
            raise InvalidClientError("jwks_uri_unavailable") from None
