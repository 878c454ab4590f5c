"""Signed checkpoints: the vault's statement "log ``origin`` had ``tree_size`` entries with this root".

A checkpoint is a compact JWS (RFC 7515) signed with EdDSA/Ed25519 (RFC 8037)::

    protected header  {"alg":"EdDSA","kid":"<key id>","typ":"kluis-checkpoint+jws"}   exactly these
    payload           RFC 8785 JSON {"origin":…,"root_hash":"<base64>","timestamp":<ms>,"tree_size":n}

Signing goes through the ``CheckpointSigner`` protocol so the key can live anywhere (the vault's
wrapped key table, an HSM). Verification is strict, because a checkpoint is evidence for outsiders:
an explicit algorithm allow-list, a pinned key set (never a key named by the token), canonical
base64url, exact header and payload members, and a payload that must be its own canonical form.
Every failure is one ``CheckpointSignatureError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from audit.errors import CheckpointSignatureError

TYP: Final = "kluis-checkpoint+jws"
ALLOWED_ALGORITHMS: Final = frozenset({"EdDSA"})
PAYLOAD_KEYS: Final = frozenset({"origin", "root_hash", "timestamp", "tree_size"})
HEADER_KEYS: Final = frozenset({"alg", "kid", "typ"})
MAX_SAFE_INTEGER: Final = 2**53 - 1
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class CheckpointSigner(Protocol):
    """Signs checkpoint payloads. ``kid`` names the key in the published checkpoint key set."""

    @property
    def kid(self) -> str: ...

    def sign(self, payload: bytes) -> str:
        """The compact JWS of ``payload`` with the header above."""
        ...


@dataclass(frozen=True, slots=True)
class CheckpointPayload:
    origin: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int

    def to_bytes(self) -> bytes:
        body = {
            "origin": self.origin,
            "root_hash": base64.b64encode(self.root_hash).decode("ascii"),
            "timestamp": self.timestamp_ms,
            "tree_size": self.tree_size,
        }
        # RFC 8785 for these four ASCII members and safe integers (see audit.leaf).
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """What a valid checkpoint says, and which pinned key signed it."""

    payload: CheckpointPayload
    kid: str


def valid_origin(origin: object) -> bool:
    return isinstance(origin, str) and 0 < len(origin) <= 255 and origin.isprintable()


def _is_ed25519(key: Mapping[str, Any]) -> bool:
    return key.get("kty") == "OKP" and key.get("crv") == "Ed25519"


class Ed25519CheckpointSigner:
    """A ``CheckpointSigner`` over a private Ed25519 JWK (jwcrypto) that carries its ``kid``."""

    def __init__(self, key: jwk.JWK) -> None:
        if not _is_ed25519(key) or not key.has_private:
            raise ValueError("checkpoints are signed with a private Ed25519 key")
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("the checkpoint key needs a kid")
        self._key = key
        self._kid = kid
        self._header = json.dumps({"alg": "EdDSA", "kid": kid, "typ": TYP}, separators=(",", ":"))

    @property
    def kid(self) -> str:
        return self._kid

    def sign(self, payload: bytes) -> str:
        token = jws.JWS(payload)
        token.add_signature(self._key, alg="EdDSA", protected=self._header)
        result = token.serialize(compact=True)
        assert isinstance(result, str)
        return result


def _unb64url(segment: str) -> bytes:
    """Canonical base64url without padding: one encoding per value, so a token has one spelling."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise CheckpointSignatureError
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise CheckpointSignatureError
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise CheckpointSignatureError
    return result


def _strict_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointSignatureError from exc
    if not isinstance(value, dict):
        raise CheckpointSignatureError
    return value


def _safe_int(value: object) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INTEGER:
        raise CheckpointSignatureError
    return value


def parse_payload(raw: bytes) -> CheckpointPayload:
    """The payload of a checkpoint, refusing anything but its single canonical spelling."""
    body = _strict_json(raw)
    if (
        body.keys() != PAYLOAD_KEYS
        or not valid_origin(body["origin"])
        or not isinstance(body["root_hash"], str)
    ):
        raise CheckpointSignatureError
    try:
        root = base64.b64decode(body["root_hash"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointSignatureError from exc
    payload = CheckpointPayload(
        origin=body["origin"],
        tree_size=_safe_int(body["tree_size"]),
        root_hash=root,
        timestamp_ms=_safe_int(body["timestamp"]),
    )
    if len(root) != 32 or payload.to_bytes() != raw:
        raise CheckpointSignatureError
    return payload


class CheckpointVerifier:
    """Verifies checkpoints against a pinned set of Ed25519 public keys (a JWKS), by ``kid``."""

    def __init__(self, jwks: jwk.JWKSet | Mapping[str, Any] | str) -> None:
        if isinstance(jwks, jwk.JWKSet):
            document: Any = json.loads(jwks.export(private_keys=False))
        elif isinstance(jwks, str):
            document = json.loads(jwks)
        else:
            document = jwks
        keys: dict[str, jwk.JWK] = {}
        for entry in document.get("keys", []) if isinstance(document, Mapping) else []:
            kid = entry.get("kid") if isinstance(entry, Mapping) else None
            if not isinstance(kid, str) or not _is_ed25519(entry):
                continue  # only Ed25519 keys with a kid can ever verify a checkpoint
            if entry.get("alg", "EdDSA") != "EdDSA" or entry.get("use", "sig") != "sig":
                continue
            if not isinstance(entry.get("x"), str):
                continue
            try:  # the public members only, whatever else the document carries
                keys[kid] = jwk.JWK(kty="OKP", crv="Ed25519", x=entry["x"], kid=kid)
            except (JWException, ValueError, TypeError):
                continue
        if not keys:
            raise ValueError("no Ed25519 checkpoint keys in the pinned key set")
        self._keys = keys

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str) -> VerifiedCheckpoint:
        """The payload of ``token`` if a pinned key signed it; else ``CheckpointSignatureError``."""
        if not isinstance(token, str) or len(token) > 8192 or token.count(".") != 2:
            raise CheckpointSignatureError
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = _strict_json(_unb64url(header_b64))
        payload = _unb64url(payload_b64)
        if len(_unb64url(signature_b64)) != 64:
            raise CheckpointSignatureError
        if header.keys() != HEADER_KEYS or header["alg"] not in ALLOWED_ALGORITHMS or header["typ"] != TYP:
            raise CheckpointSignatureError
        key = self._keys.get(header["kid"]) if isinstance(header["kid"], str) else None
        if key is None:
            raise CheckpointSignatureError
        checked = jws.JWS()
        checked.allowed_algs = sorted(ALLOWED_ALGORITHMS)
        try:
            checked.deserialize(token, key=key, alg="EdDSA")
        except (JWException, ValueError, TypeError) as exc:
            raise CheckpointSignatureError from exc
        return VerifiedCheckpoint(payload=parse_payload(payload), kid=header["kid"])
