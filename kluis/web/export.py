"""The resident's own export (GDPR art. 15 and 20): one JSON document with everything about them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from audit.queries import event_json, iter_events
from audit.schemas import AuditQuery
from consent.schemas import GrantView, Page, ResidentPrincipal
from kluis.web.deps import Viewer
from kluis.wiring import Services
from vault.models import Resident

FORMAT = "urn:kluis:export:1"


def build_export(session: Session, services: Services, resident: Resident, now: datetime) -> dict[str, Any]:
    records = services.vault.all_records(session, resident)
    principal = ResidentPrincipal(tenant_id=resident.tenant_id, resident_id=resident.id)
    grants = [
        _grant(g)
        for g in _all(lambda cursor: services.consent.grants(session, principal, now, cursor=cursor))
    ]
    return {
        "format": FORMAT,
        "generated_at": now.isoformat(),
        "resident": {"bsn": services.vault.reveal_bsn(resident)},
        "records": [r.public() for r in records],
        "grants": grants,
        "access_history": [
            event_json(logged.seq, logged.event)
            for logged in iter_events(
                session, resident.tenant_id, AuditQuery(involving=resident.audit_pseudonym)
            )
        ],
    }


def pending_count(session: Session, services: Services, viewer: Viewer, now: datetime) -> int:
    """How many consent requests wait for the subject's decision."""
    principal = ResidentPrincipal(tenant_id=viewer.tenant_id, resident_id=viewer.subject_id)
    return len(services.consent.requests(session, principal, now, status="pending").items)


def _all(fetch: Callable[[str | None], Page]) -> list[Any]:
    """Every item of a keyset-paginated list."""
    items: list[Any] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def _grant(view: GrantView) -> dict[str, Any]:
    return {
        "id": view.id,
        "status": view.status,
        "department": view.department_code,
        "purpose": view.purpose_code,
        "legal_basis": view.legal_basis,
        "categories": list(view.categories),
        "valid_from": view.valid_from.isoformat(),
        "valid_until": view.valid_until.isoformat(),
        "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None,
    }
