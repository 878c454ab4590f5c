""" "Wie heeft mijn gegevens bekeken": the resident's own audit entries, filterable by period and
department, each with a link that checks its inclusion proof against the signed checkpoint."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from kluis.api.deps import NowDep, ServicesDep
from kluis.web.access_log import AccessEntry, Names, describe
from kluis.web.deps import PortalDep, Viewer, ViewerDep
from kluis.web.errors import PageNotFoundError
from kluis.web.i18n import TIMEZONE
from kluis.web.render import language
from kluis.wiring import Services

router = APIRouter(prefix="/portaal", include_in_schema=False)
DateQuery = Annotated[str | None, Query(max_length=10, pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
DepartmentQuery = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_-]*$")]


def entries_for(session: Session, services: Services, viewer: Viewer) -> list[AccessEntry]:
    """The audit entries about the subject, and those the viewer made on their behalf, newest first.

    Waits for the audit package's search by data subject (``audit.services``), which is being
    written; until then the history is empty.
    """
    return []


def names_for(session: Session, services: Services, viewer: Viewer) -> Names:
    departments = {d.code: d.name for d in services.departments.list(session, viewer.tenant_id)}
    return Names(
        departments=departments, purposes={}, me=viewer.me_pseudonym, subject=viewer.subject_pseudonym
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
    request: Request, sequence: Annotated[int, Path(ge=0)], viewer: ViewerDep, services: ServicesDep
) -> Response:
    """Check one entry's inclusion proof against the latest signed checkpoint.

    Needs the audit package's inclusion proofs and checkpoints; until they exist no entry can be
    checked, so every entry answers "not found" rather than a check that proves nothing.
    """
    with services.db.read_session() as session:
        entries = entries_for(session, services, viewer)
    if not any(e.sequence == sequence for e in entries):
        raise PageNotFoundError
    raise PageNotFoundError
