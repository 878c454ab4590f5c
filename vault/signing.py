"""Signing keys for access tokens (ES256) and audit checkpoints (EdDSA/Ed25519).

The private keys are stored in the database wrapped by the key provider's system KEK, so every node
of a multi-node deployment signs with the same keys and an HSM provider keeps the wrapping key
inside. Rotation adds a key and retires the old one for signing; its public half stays published.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Literal

from jwcrypto import jwk
from sqlmodel import Session, col, select

from vault import crypto
from vault.keys import SYSTEM_TENANT, KeyProvider
from vault.models import SigningKey

Purpose = Literal["token", "checkpoint"]
ALGORITHMS: dict[str, str] = {"token": "ES256", "checkpoint": "EdDSA"}
SYSTEM_KEK_VERSION = 1


def _generate(alg: str) -> jwk.JWK:
    if alg == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    if alg == "EdDSA":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    raise ValueError("unsupported algorithm")


class SigningKeyService:
    def __init__(self, keys: KeyProvider) -> None:
        self.keys = keys
        self._private: dict[str, jwk.JWK] = {}

    def ensure_system_kek(self) -> None:
        self.keys.create_kek(SYSTEM_TENANT, SYSTEM_KEK_VERSION)

    def create(self, session: Session, purpose: Purpose, now: datetime) -> SigningKey:
        """Add a new active key for ``purpose``; older keys of that purpose stop signing."""
        alg = ALGORITHMS[purpose]
        key = _generate(alg)
        kid = f"{purpose}-{now:%Y%m%d}-{secrets.token_hex(4)}"
        private = key.export_private().encode()
        public = json.loads(key.export_public())
        public.update({"kid": kid, "alg": alg, "use": "sig"})
        aad = crypto.secret_aad(SYSTEM_TENANT, f"signing:{kid}")
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
            wrapped_private=self.keys.wrap(SYSTEM_TENANT, SYSTEM_KEK_VERSION, private, aad),
            kek_version=SYSTEM_KEK_VERSION,
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
        cached = self._private.get(row.kid)
        if cached is None:
            aad = crypto.secret_aad(SYSTEM_TENANT, f"signing:{row.kid}")
            plain = self.keys.unwrap(SYSTEM_TENANT, row.kek_version, row.wrapped_private, aad)
            cached = jwk.JWK.from_json(plain.decode())
            cached.update(kid=row.kid, alg=row.alg, use="sig")
            self._private[row.kid] = cached
        return cached

    def public_jwks(self, session: Session, purpose: Purpose) -> dict[str, list[dict[str, str]]]:
        """All public keys of ``purpose``, retired ones included (old signatures stay checkable)."""
        rows = session.exec(
            select(SigningKey).where(SigningKey.purpose == purpose).order_by(col(SigningKey.created_at))
        )
        return {"keys": [json.loads(r.public_jwk) for r in rows]}
