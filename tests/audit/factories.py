"""Events and logs for the audit tests, and the database administrator's tools for tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from audit import services
from audit.models import ENTRY
from audit.schemas import Actor, AuditEvent, TraceContext
from kluis.db import Database

TENANT = "3f1c0a7e9b2d4c6f8a1e0b3d5c7f9a2e"
ORIGIN = "kluis/gemeente-test"
START = datetime(2026, 3, 3, 13, 2, tzinfo=UTC)
DEPARTMENTS = ("jeugdzorg", "inkomen", "wmo")
APPEND_ONLY = ("audit_entry", "audit_node", "audit_checkpoint")


def event(i: int = 0, *, tenant: str = TENANT, **changes: object) -> AuditEvent:
    """A varied but deterministic event: department, decision, subject and time follow ``i``."""
    trace = TraceContext(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", parent_span_id=None)
    fields: dict[str, object] = {
        "tenant": tenant,
        "name": "vault:record:read" if i % 4 else "consent:grant:revoked",
        "actor": Actor(type="client", id=f"client-{i % 3}"),
        "trace": trace,
        "start_time": START + timedelta(hours=i),
        "end_time": START + timedelta(hours=i, milliseconds=5),
        "decision": "deny" if i % 5 == 0 else "allow",
        "reason": "grant_expired" if i % 5 == 0 else None,
        "data_subject_id": f"subject-{i % 4}",
        "processing_activity_id": "jeugdhulp" if i % 2 else "bijstand",
        "legal_basis": "gdpr-6-1-a",
        "grant_id": f"grant-{i % 6}",
        "department": DEPARTMENTS[i % 3],
        "client_id": f"client-{i % 3}",
        "categories": ("inkomen",),
        "details": {"n": i},
    }
    fields.update(changes)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def fill(db: Database, count: int, *, tenant: str = TENANT, start: int = 0, batch: int = 1) -> None:
    """Append ``count`` events, ``batch`` per transaction."""
    for first in range(start, start + count, batch):
        with db.session() as session:
            services.append_many(
                session, [event(i, tenant=tenant) for i in range(first, min(first + batch, start + count))]
            )
            session.commit()


def drop_triggers(session: Session) -> None:
    """What a database administrator does first. Inside the session's transaction, so a rollback
    puts the triggers back (DDL is transactional on SQLite and PostgreSQL)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        for table in APPEND_ONLY:
            conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))
            conn.execute(text(f"DROP TRIGGER {table}_no_truncate ON {table}"))
        conn.execute(text("DROP TRIGGER audit_log_state_forward_only ON audit_log_state"))
        conn.execute(text("DROP TRIGGER audit_log_state_no_delete ON audit_log_state"))
    else:
        for table in APPEND_ONLY:
            conn.execute(text(f"DROP TRIGGER {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
        conn.execute(text("DROP TRIGGER audit_log_state_forward_only"))
        conn.execute(text("DROP TRIGGER audit_log_state_no_delete"))


OTHER_TENANT = "0b1e2c3d4f5a6b7c8d9e0f1a2b3c4d5e"
CHECKPOINT_SIZES = (5, 11, 13)


def build_log(db: Database, signer: object) -> None:
    """The log the tamper tests damage: 13 entries of ``TENANT`` appended in batches of varying size,
    checkpoints at 5, 11 and 13; and a neighbouring log that must not disturb it."""
    with db.session() as session:
        services.ensure_log(session, TENANT, ORIGIN)
        services.ensure_log(session, OTHER_TENANT, "kluis/other")
        session.commit()
    fill(db, 5, batch=2)
    sign(db, signer)
    fill(db, 6, start=5, batch=3)
    fill(db, 4, tenant=OTHER_TENANT)
    sign(db, signer)
    fill(db, 2, start=11)
    sign(db, signer)


def sign(db: Database, signer: object, tenant: str = TENANT) -> None:
    with db.session() as session:
        services.sign_checkpoint(session, tenant, signer, START)  # type: ignore[arg-type]
        session.commit()


def forged_signature(jws: str) -> str:
    """The token with one character of its signature changed (never a no-op: the character differs)."""
    position = len(jws) - 10
    return jws[:position] + ("B" if jws[position] != "B" else "C") + jws[position + 1 :]


def stored_leaves(db: Database, tenant: str = TENANT) -> list[bytes]:
    """The tenant's stored leaf bytes, in sequence order."""
    with db.read_session() as session:
        rows = session.connection().execute(
            ENTRY.select().where(ENTRY.c.tenant_id == tenant).order_by(ENTRY.c.seq)
        )
        return [bytes(r.leaf_bytes) for r in rows]


def assert_head_is_the_rfc_root(db: Database, tenant: str = TENANT) -> list[bytes]:
    """The log's head covers exactly the stored leaves, with RFC 6962's root of them (computed the
    naive way, independently of ``audit.merkle``); returns the leaves."""
    from tests.audit import naive

    leaves = stored_leaves(db, tenant)
    with db.read_session() as session:
        head = services.log_head(session, tenant)
    assert head.tree_size == len(leaves)
    assert head.root_hash == naive.mth(tuple(leaves))
    return leaves
