"""Migration 0008: mandates given before invitations existed stay in force; down again drops only
the invitations nobody accepted. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from alembic import command
from sqlalchemy import text

from kluis.db import Database, alembic_config
from tests.vault.conftest import BSN_A, BSN_B
from vault.models import Tenant
from vault.services import Context, VaultService

BSN_C = "999990044"


def _alembic(db: Database, step: Any, revision: str) -> None:
    with db.write_engine.begin() as conn:
        config = alembic_config(db.url)
        config.attributes["connection"] = conn
        step(config, revision)


def _mandate(db: Database, tenant: Tenant, mandate_id: str, principal: str, representative: str) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with db.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mandate (id, tenant_id, principal_id, representative_id, may_view, "
                "may_decide, valid_from, valid_until, created_at) VALUES (:id, :t, :p, :r, :yes, :no, "
                ":created, :until, :created)"
            ),
            {
                "id": mandate_id,
                "t": tenant.id,
                "p": principal,
                "r": representative,
                "yes": True,
                "no": False,
                # Raw SQL, as the old table saw it: SQLite holds UTC without a zone.
                "created": created.replace(tzinfo=None) if db.is_sqlite else created,
                "until": datetime(2030, 1, 1) if db.is_sqlite else datetime(2030, 1, 1, tzinfo=UTC),
            },
        )


def test_earlier_mandates_stay_accepted_and_an_erased_representatives_is_stopped(
    db: Database, vault: VaultService, tenant: Tenant, ctx: Callable[[], Context]
) -> None:
    with db.session() as session:
        a, b, c = (vault.add_resident(session, ctx(), tenant, bsn) for bsn in (BSN_A, BSN_B, BSN_C))
        ids = {"a": a.id, "b": b.id, "c": c.id}
        pseudonym_b = b.bsn_pseudonym
        vault.erase_resident(session, ctx(), c)
    _alembic(db, command.downgrade, "0007_verification_since")
    _mandate(db, tenant, "m" * 32, ids["a"], ids["b"])
    _mandate(db, tenant, "e" * 32, ids["a"], ids["c"])  # to a representative erased since
    _alembic(db, command.upgrade, "head")
    with db.read_session() as session:
        rows = {
            r[0]: r[1:]
            for r in session.execute(
                text(
                    "SELECT id, representative_pseudonym, accepted_at, created_at, revoked_at, "
                    "representative_id FROM mandate"
                )
            )
        }
    pseudonym, accepted, created, revoked, representative = rows["m" * 32]
    assert bytes(pseudonym) == pseudonym_b and accepted == created and revoked is None
    assert representative == ids["b"]
    pseudonym, accepted, created, revoked, _ = rows["e" * 32]
    assert pseudonym is None and revoked == created  # never usable again
    # Down again: an invitation nobody accepted has no place in the old table; the rest stays.
    with db.write_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mandate (id, tenant_id, principal_id, representative_pseudonym, may_view, "
                "may_decide, valid_from, valid_until, created_at) SELECT 'p' || substr(id, 2), "
                "tenant_id, principal_id, representative_pseudonym, may_view, may_decide, valid_from, "
                "valid_until, created_at FROM mandate WHERE id = :m"
            ),
            {"m": "m" * 32},
        )
    _alembic(db, command.downgrade, "0007_verification_since")
    with db.read_session() as session:
        left = {r[0] for r in session.execute(text("SELECT id FROM mandate"))}
    assert left == {"m" * 32, "e" * 32}
    _alembic(db, command.upgrade, "head")
