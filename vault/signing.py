"""Signing keys for access tokens (ES256) and audit checkpoints (EdDSA/Ed25519).

By default the private keys are stored in the database wrapped by the key provider's system KEK, so
every node of a multi-node deployment signs with the same keys and an HSM provider keeps the
wrapping key inside. With a ``SigningKeyStore`` (the PKCS#11 provider, ``KLUIS_PKCS11_SIGNING_KEYS``)
new keys are generated *in* the HSM instead, never leave it, and every signature is made there; the
database row then holds only the public key and a reference to the HSM object. Rotation adds a key
and retires the old one for signing; its public half stays published.

Every signature goes through ``sign_jws``: a compact JWS (RFC 7515) over a payload with exactly the
protected header the caller wrote. Software keys sign with jwcrypto; HSM keys return the raw JWS
signature (ES256 ``r ‖ s``, Ed25519) and the JWS is assembled around it.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Literal, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwcrypto import jwk, jws
from jwcrypto.common import base64url_encode
from sqlmodel import Session, col, select

from vault import crypto
from vault.errors import KeyProviderError
from vault.keys import SYSTEM_TENANT, KeyProvider
from vault.models import SigningKey

Purpose = Literal["token", "checkpoint"]
ALGORITHMS: dict[str, str] = {"token": "ES256", "checkpoint": "EdDSA"}
SYSTEM_KEK_VERSION = 1
# ``wrapped_private`` of a key that lives in the store: this prefix, then the object's label. A wrapped
# key starts with its envelope's version byte 0x01, so the two never look alike.
STORE_REFERENCE = b"\x00store:"
STORE_KEK_VERSION = 0  # no KEK wraps a key that never leaves the store
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SigningKeyStore(Protocol):
    """Keeps private signing keys inside (an HSM): generated there, used there, never exported."""

    def create_signing_key(self, label: str, alg: str) -> PublicKey:
        """Generate a non-extractable key pair for ``alg`` (``ES256`` or ``EdDSA``) named ``label``;
        return its public half. ``KeyProviderError`` if it cannot."""
        ...

    def sign_with(self, label: str, alg: str, data: bytes) -> bytes:
        """The raw JWS signature of ``data`` (64 bytes for ``ES256`` and ``EdDSA``) by key ``label``."""
        ...


def _generate(alg: str) -> jwk.JWK:
    if alg == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    if alg == "EdDSA":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    raise ValueError("unsupported algorithm")


def store_label(row: SigningKey) -> str | None:
    """The store object's label if ``row``'s private key lives in the signing-key store, else None."""
    if row.wrapped_private.startswith(STORE_REFERENCE):
        return row.wrapped_private[len(STORE_REFERENCE) :].decode("ascii")
    return None


class SigningKeyService:
    def __init__(self, keys: KeyProvider, store: SigningKeyStore | None = None) -> None:
        self.keys = keys
        self.store = store  # new keys are created here when set
        self._private: dict[str, jwk.JWK] = {}

    def ensure_system_kek(self) -> None:
        self.keys.create_kek(SYSTEM_TENANT, SYSTEM_KEK_VERSION)

    def create(self, session: Session, purpose: Purpose, now: datetime) -> SigningKey:
        """Add a new active key for ``purpose``; older keys of that purpose stop signing.

        With a store the key pair is generated in it before the row is written; if the caller's
        transaction then rolls back, an unused object stays behind in the store (harmless)."""
        alg = ALGORITHMS[purpose]
        kid = f"{purpose}-{now:%Y%m%d}-{secrets.token_hex(4)}"
        if self.store is not None:
            label = f"kluis:signing:{kid}"
            key = jwk.JWK.from_pyca(self.store.create_signing_key(label, alg))
            private, kek_version = STORE_REFERENCE + label.encode("ascii"), STORE_KEK_VERSION
        else:
            key = _generate(alg)
            aad = crypto.secret_aad(SYSTEM_TENANT, f"signing:{kid}")
            private = self.keys.wrap(SYSTEM_TENANT, SYSTEM_KEK_VERSION, key.export_private().encode(), aad)
            kek_version = SYSTEM_KEK_VERSION
        public = json.loads(key.export_public())
        public.update({"kid": kid, "alg": alg, "use": "sig"})
        for old in session.exec(
            select(SigningKey).where(SigningKey.purpose == purpose, col(SigningKey.retired_at).is_(None))
        ):
            old.retired_at = now
            session.add(old)
        row = SigningKey(
            kid=kid,
            purpose=purpose,
            alg=alg,
            public_jwk=json.dumps(public, sort_keys=True),
            wrapped_private=private,
            kek_version=kek_version,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row

    def active(self, session: Session, purpose: Purpose) -> SigningKey | None:
        return session.exec(
            select(SigningKey)
            .where(SigningKey.purpose == purpose, col(SigningKey.retired_at).is_(None))
            .order_by(col(SigningKey.created_at).desc())
        ).first()

    def ensure(self, session: Session, purpose: Purpose, now: datetime) -> SigningKey:
        """The active key of ``purpose``, created (and committed) on first use."""
        row = self.active(session, purpose)
        if row is None:
            row = self.create(session, purpose, now)
            session.commit()
        return row

    def private_key(self, row: SigningKey) -> jwk.JWK:
        """The private JWK of a key wrapped in the database; ``KeyProviderError`` for a key that
        lives in the store (it cannot be exported)."""
        if store_label(row) is not None:
            raise KeyProviderError("this signing key lives in the HSM and never leaves it")
        cached = self._private.get(row.kid)
        if cached is None:
            aad = crypto.secret_aad(SYSTEM_TENANT, f"signing:{row.kid}")
            plain = self.keys.unwrap(SYSTEM_TENANT, row.kek_version, row.wrapped_private, aad)
            cached = jwk.JWK.from_json(plain.decode())
            cached.update(kid=row.kid, alg=row.alg, use="sig")
            self._private[row.kid] = cached
        return cached

    def sign_jws(self, row: SigningKey, protected: str, payload: bytes) -> str:
        """The compact JWS of ``payload`` signed by ``row``, with exactly ``protected`` (JSON text
        whose ``alg`` and ``kid`` must be the key's) as its protected header."""
        header = json.loads(protected)
        if not isinstance(header, dict) or header.get("alg") != row.alg or header.get("kid") != row.kid:
            raise ValueError("the protected header must name the key's alg and kid")
        label = store_label(row)
        if label is None:
            token = jws.JWS(payload)
            token.add_signature(self.private_key(row), alg=row.alg, protected=protected)
            return str(token.serialize(compact=True))
        if self.store is None:
            raise KeyProviderError("this signing key lives in the HSM (set KLUIS_PKCS11_SIGNING_KEYS=true)")
        signing_input = f"{base64url_encode(protected)}.{base64url_encode(payload)}"
        signature = self.store.sign_with(label, row.alg, signing_input.encode("ascii"))
        return f"{signing_input}.{base64url_encode(signature)}"

    def public_jwks(self, session: Session, purpose: Purpose) -> dict[str, list[dict[str, str]]]:
        """All public keys of ``purpose``, retired ones included (old signatures stay checkable)."""
        rows = session.exec(
            select(SigningKey).where(SigningKey.purpose == purpose).order_by(col(SigningKey.created_at))
        )
        return {"keys": [json.loads(r.public_jwk) for r in rows]}
