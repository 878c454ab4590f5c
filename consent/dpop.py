"""DPoP proofs (RFC 9449): verification of a proof JWT, FastAPI-free.

A proof is a JWT with ``typ: dpop+jwt`` signed by the key in its own ``jwk`` header (public key
only), carrying ``jti``, ``htm``, ``htu``, ``iat`` and — at resource servers — ``ath``, the hash of
the access token. A token bound to a key (``cnf.jkt``) is only usable with a fresh proof from that
key; the ``jti`` of every accepted proof is remembered (in the database) until it is too old to be
accepted again.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from consent.errors import InvalidDpopProofError, InvalidTokenError

ALLOWED_ALGS = frozenset({"ES256", "ES384", "EdDSA", "PS256", "RS256"})
MAX_PROOF_BYTES = 4096
MAX_AGE_SECONDS = 60
MAX_CLOCK_SKEW_SECONDS = 5


class DpopProofRefusedError(InvalidTokenError):
    """A DPoP-bound token at a resource server without a valid proof: 401 with a ``DPoP``
    challenge naming ``invalid_dpop_proof`` and the accepted algorithms (RFC 9449 §7.1). (At the
    token endpoint the same failure is ``InvalidDpopProofError``, an OAuth 400.)"""

    message = "this DPoP-bound access token needs a valid DPoP proof with every request"

    def challenge(self) -> str:
        return f'DPoP error="invalid_dpop_proof", algs="{" ".join(sorted(ALLOWED_ALGS))}"'


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    jkt: str  # RFC 7638 thumbprint (SHA-256, base64url) of the proof's key
    jti: str
    iat: int


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_token_hash(token: str) -> str:
    return _b64url(hashlib.sha256(token.encode()).digest())


def normalise_htu(url: str) -> str:
    """The URL without query and fragment, scheme and host lower-cased (RFC 9449 §4.3)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", "", ""))


def _segment(value: str) -> dict[str, Any]:
    padded = value + "=" * (-len(value) % 4)
    decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(decoded, dict):
        raise TypeError("not an object")
    return decoded


def _checked_header(proof: str) -> dict[str, Any]:
    """The proof's header, if it is a DPoP header we accept: typ, allowed algorithm, a public key."""
    if len(proof) > MAX_PROOF_BYTES or proof.count(".") != 2:
        raise InvalidDpopProofError("dpop_proof_malformed")
    try:
        header = _segment(proof.split(".", 1)[0])
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidDpopProofError("dpop_proof_malformed") from exc
    if header.get("typ") != "dpop+jwt" or header.get("alg") not in ALLOWED_ALGS:
        raise InvalidDpopProofError("dpop_proof_header")
    if any(name in header for name in ("crit", "jku", "x5u", "x5c")):
        raise InvalidDpopProofError("dpop_proof_header")
    public = header.get("jwk")
    if not isinstance(public, dict) or any(k in public for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise InvalidDpopProofError("dpop_proof_key")
    return header


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: datetime,
    access_token: str | None = None,
    expected_jkt: str | None = None,
) -> VerifiedProof:
    """Check a DPoP proof; every failure is ``InvalidDpopProofError`` with a reason code."""
    header = _checked_header(proof)
    try:
        key = jwk.JWK(**header["jwk"])
        token = jws.JWS()
        token.deserialize(proof)
        token.allowed_algs = [header["alg"]]
        token.verify(key)
        claims = json.loads(token.payload)
    except (JWException, ValueError, TypeError, KeyError) as exc:
        raise InvalidDpopProofError("dpop_proof_signature") from exc
    if not isinstance(claims, dict):
        raise InvalidDpopProofError("dpop_proof_claims")
    jkt = str(key.thumbprint())
    if expected_jkt is not None and jkt != expected_jkt:
        raise InvalidDpopProofError("dpop_key_mismatch")
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 200 or not isinstance(iat, int):
        raise InvalidDpopProofError("dpop_proof_claims")
    if claims.get("htm") != method.upper():
        raise InvalidDpopProofError("dpop_htm_mismatch")
    htu = claims.get("htu")
    if not isinstance(htu, str) or normalise_htu(htu) != normalise_htu(url):
        raise InvalidDpopProofError("dpop_htu_mismatch")
    age = now.timestamp() - iat
    if age > MAX_AGE_SECONDS or age < -MAX_CLOCK_SKEW_SECONDS:
        raise InvalidDpopProofError("dpop_proof_stale")
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDpopProofError("dpop_ath_mismatch")
    return VerifiedProof(jkt=jkt, jti=jti, iat=iat)
