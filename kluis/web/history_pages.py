""" "Wie heeft mijn gegevens bekeken": the resident's own audit entries, filterable by period and
department, each with a link that checks its inclusion proof against the signed checkpoint."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from audit import leaf, merkle, tags
from audit import services as audit_log
from audit.checkpoints import CheckpointVerifier
from audit.errors import AuditError
from audit.schemas import AuditEvent, AuditQuery
from kluis.api.audit import latest_checkpoint
from kluis.api.deps import NowDep, ServicesDep
from kluis.web import i18n
from kluis.web.access_log import AccessEntry, Names, describe
from kluis.web.deps import PortalDep, Viewer, ViewerDep
from kluis.web.errors import PageNotFoundError
from kluis.web.i18n import TIMEZONE
from kluis.web.render import language
from kluis.wiring import Services

router = APIRouter(prefix="/portaal", include_in_schema=False)
DateQuery = Annotated[str | None, Query(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
DepartmentQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_-]*$")]


MAX_ENTRIES = 1000  # the most recent; the JSON API (/api/v1/me/access-log) pages through all


def entries_for(session: Session, services: Services, viewer: Viewer) -> list[AccessEntry]:
    """The audit entries about the subject, and those made on their behalf, newest first.

    To the subject themself also what they did for others (as a representative) and their logins.
    A representative sees what was done with the subject's data only: not when its owner logged in,
    nor what the owner did for a third person (a parent's acts for their child are not the business
    of the parent's own representative)."""
    query = AuditQuery(involving=viewer.subject_pseudonym)
    page = audit_log.search(session, viewer.tenant_id, query, limit=MAX_ENTRIES)
    return [
        AccessEntry(
            sequence=logged.seq,
            time=logged.event.start_time,
            name=logged.event.name,
            actor_type=logged.event.actor.type,
            actor_id=logged.event.actor.id,
            on_behalf_of=logged.event.actor.on_behalf_of,
            subject=logged.event.data_subject_id,
            department=logged.event.department,
            categories=logged.event.categories,
            purpose=logged.event.processing_activity_id,
            decision=logged.event.decision,
            reason=logged.event.reason,
        )
        for logged in page.entries
        if viewer.is_self or _about_the_subject(logged.event, viewer.subject_pseudonym)
    ]


def _about_the_subject(event: AuditEvent, subject: str) -> bool:
    """An entry about ``subject``'s data or an act on their behalf; not their own login."""
    if event.name == tags.RESIDENT_LOGGED_IN:
        return False
    return subject in (event.data_subject_id, event.actor.on_behalf_of)


def names_for(session: Session, services: Services, viewer: Viewer) -> Names:
    departments = {d.code: d.name for d in services.departments.list(session, viewer.tenant_id)}
    purposes = {p.code: p.description_nl for p in services.purposes.list(session, viewer.tenant_id)}
    return Names(
        departments=departments, purposes=purposes, me=viewer.me_pseudonym, subject=viewer.subject_pseudonym
    )


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/inzage")
def history_page(
    request: Request,
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
    van: DateQuery = None,
    tot: DateQuery = None,
    afdeling: DepartmentQuery = None,
) -> Response:
    since, until = _day(van), _day(tot)
    with services.db.read_session() as session:
        entries = entries_for(session, services, viewer)
        names = names_for(session, services, viewer)
    if since is not None:
        start = datetime.combine(since, time(0), TIMEZONE)
        entries = [e for e in entries if e.time >= start]
    if until is not None:
        end = datetime.combine(until, time(0), TIMEZONE) + timedelta(days=1)
        entries = [e for e in entries if e.time < end]
    if afdeling:
        entries = [e for e in entries if e.department == afdeling]
    lang = language(request)
    lines = [(e, describe(e, names, lang)) for e in entries]
    return portal.templates.render(
        request,
        "history.html",
        viewer=viewer,
        lines=lines,
        departments=sorted(names.departments.items(), key=lambda item: item[1]),
        van=van or "",
        tot=tot or "",
        afdeling=afdeling or "",
        today=now.astimezone(TIMEZONE).date().isoformat(),
    )


@router.get("/inzage/{sequence}/controleren")
def verify_page(
    request: Request,
    sequence: Annotated[int, Path(ge=0, le=2**62)],
    viewer: ViewerDep,
    services: ServicesDep,
    portal: PortalDep,
    now: NowDep,
) -> Response:
    """Check one entry's inclusion proof against the latest signed checkpoint, here on the server
    with the published checkpoint keys (a resident's own app can do the same with the JSON API)."""
    checkpoint = latest_checkpoint(services, viewer.tenant_id, now)
    with services.db.read_session() as session:
        entry = audit_log.get_entry(session, viewer.tenant_id, sequence)
        if entry is None or sequence >= checkpoint.tree_size:
            raise PageNotFoundError
        event = leaf.decode_leaf(entry.leaf_bytes)[1]
        if viewer.subject_pseudonym not in {event.data_subject_id, event.actor.id, event.actor.on_behalf_of}:
            raise PageNotFoundError  # not about this resident: nothing is revealed
        proof = audit_log.inclusion_proof(session, viewer.tenant_id, sequence, checkpoint.tree_size)
        keys = services.signing.public_jwks(session, "checkpoint")
    genuine = True
    try:
        signed = CheckpointVerifier(keys).verify(checkpoint.jws).payload
        genuine = signed.tree_size == checkpoint.tree_size and signed.root_hash == checkpoint.root_hash
        merkle.verify_inclusion(
            sequence,
            checkpoint.tree_size,
            merkle.leaf_hash(entry.leaf_bytes),
            proof.audit_path,
            signed.root_hash,
        )
    except (AuditError, ValueError):
        genuine = False
    lang = language(request)
    return portal.templates.render(
        request,
        "verify.html",
        viewer=viewer,
        genuine=genuine,
        number=sequence,
        size=checkpoint.tree_size,
        signed_at=i18n.when(checkpoint.timestamp, lang),
    )
