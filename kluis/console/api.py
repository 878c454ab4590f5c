"""The findings of the anomaly rules over the JSON API, for a privacy officer's bearer token
(``kluis dev-token --tenant T --privacy-officer`` in development). The tenant comes from the token.

``GET /api/v1/audit/findings``, ``GET /api/v1/audit/findings/{id}``,
``POST /api/v1/audit/findings/{id}/review`` (audited as ``audit:finding:reviewed``). A finding of
another municipality is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from starlette.exceptions import HTTPException

from audit.schemas import Actor
from kluis.api.auth import PrivacyOfficerDep
from kluis.api.deps import NowDep, ServicesDep, TraceDep
from kluis.console.deps import ConsoleDep
from kluis.console.errors import InvalidSearchError, NotFoundError
from kluis.console.schemas import FindingList, FindingPublic, ReviewCreate
from vault.services import Context

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
FindingId = Annotated[str, Path(max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such finding in the officer's municipality"}
}


@router.get("/findings", summary="Anomaly findings of the officer's municipality, newest first")
def list_findings(
    officer: PrivacyOfficerDep,
    services: ServicesDep,
    console: ConsoleDep,
    status: Literal["open", "reviewed"] | None = None,
    rule: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FindingList:
    with services.db.read_session() as session:
        try:
            items, next_cursor = console.service.findings(
                session, officer.tenant_id, status=status, rule=rule, cursor=cursor, limit=limit
            )
        except InvalidSearchError:
            raise HTTPException(400, "the cursor is not valid") from None
    return FindingList(items=[f.public() for f in items], next_cursor=next_cursor)


@router.get("/findings/{finding_id}", summary="One finding", responses=NOT_FOUND)
def get_finding(
    finding_id: FindingId, officer: PrivacyOfficerDep, services: ServicesDep, console: ConsoleDep
) -> FindingPublic:
    with services.db.read_session() as session:
        try:
            return console.service.finding(session, officer.tenant_id, finding_id).public()
        except NotFoundError:
            raise HTTPException(404, "no such finding") from None


@router.post(
    "/findings/{finding_id}/review",
    summary="Mark a finding reviewed, with a note (audited)",
    responses=NOT_FOUND,
)
def review_finding(
    request: Request,
    finding_id: FindingId,
    body: ReviewCreate,
    officer: PrivacyOfficerDep,
    services: ServicesDep,
    console: ConsoleDep,
    trace: TraceDep,
    now: NowDep,
) -> FindingPublic:
    ctx = Context(actor=Actor(type="privacy_officer", id=officer.subject), trace=trace, now=now)
    with services.db.session() as session:
        try:
            return console.service.review(session, ctx, officer.tenant_id, finding_id, body.note).public()
        except NotFoundError:
            raise HTTPException(404, "no such finding") from None
        except InvalidSearchError:
            raise HTTPException(422, "the note is empty") from None
