"""Audit entries of consent events: who (client, department, resident), which grant, why.

Entries are appended in the caller's session, so an act and its entry commit together. They hold
opaque ids and codes only: the resident's *audit pseudonym*, never the BSN, a name or a token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from sqlmodel import Session

from audit import services as audit_log
from audit.schemas import Actor
from consent.models import Grant
from vault.models import Resident
from vault.services import Context, VaultService


def client_actor(client_id: str) -> Actor:
    return Actor(type="client", id=client_id)


def resident_actor(ctx: Context, resident: Resident) -> Context:
    """A resident acting for themself is named by their audit pseudonym, never the API id.

    Any other actor (a representative, the operator) is kept as the caller gave it.
    """
    if ctx.actor.type != "resident":
        return ctx
    return dataclasses.replace(ctx, actor=Actor(type="resident", id=resident.audit_pseudonym))


def record(
    session: Session,
    ctx: Context,
    tenant_id: str,
    name: str,
    *,
    resident: Resident | None = None,
    grant: Grant | None = None,
    client_id: str | None = None,
    department: str | None = None,
    purpose: str | None = None,
    legal_basis: str | None = None,
    categories: Iterable[str] = (),
    decision: str | None = None,
    reason: str | None = None,
    status: str = "ok",
    details: dict[str, str | int | bool | None] | None = None,
) -> None:
    event = VaultService.event(
        ctx,
        tenant_id,
        name,
        resident=resident,
        decision=decision,
        reason=reason,
        categories=categories,
        status=status,
        details=details,
    )
    event = dataclasses.replace(
        event,
        client_id=client_id or (grant.client_id if grant else None),
        department=department or (grant.department_code if grant else None),
        grant_id=grant.id if grant else None,
        processing_activity_id=purpose or (grant.purpose_code if grant else None),
        legal_basis=legal_basis or (grant.legal_basis if grant else None),
    )
    audit_log.append(session, event)
