"""Fixtures of the audit tests: a migrated database with one empty log, a checkpoint key, events.

Audit tables have no foreign key to ``tenant``: any opaque tenant id works, no vault needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jwcrypto import jwk

from audit import services
from audit.checkpoints import CheckpointVerifier, Ed25519CheckpointSigner
from kluis.db import Database
from tests.audit.factories import ORIGIN, TENANT


@pytest.fixture(scope="session")
def signing_key() -> jwk.JWK:
    return jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="checkpoint-test-1")


@pytest.fixture(scope="session")
def signer(signing_key: jwk.JWK) -> Ed25519CheckpointSigner:
    return Ed25519CheckpointSigner(signing_key)


@pytest.fixture(scope="session")
def public_jwks(signing_key: jwk.JWK) -> dict[str, object]:
    return {"keys": [signing_key.export_public(as_dict=True)]}


@pytest.fixture(scope="session")
def verifier(public_jwks: dict[str, object]) -> CheckpointVerifier:
    return CheckpointVerifier(public_jwks)


@pytest.fixture
def log_db(db: Database) -> Iterator[Database]:
    """A migrated database (SQLite and PostgreSQL) with the empty log of ``TENANT``."""
    with db.session() as session:
        services.ensure_log(session, TENANT, ORIGIN)
        session.commit()
    yield db
