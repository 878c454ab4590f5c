"""The resident's consent API (portal and mobile apps): see requests, approve (possibly narrower),
deny, list grants, revoke. Resident bearer tokens; the resident is always the token's."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from audit.schemas import Actor
from consent.schemas import GrantView, Page, RequestView
from kluis.api.auth import ResidentDep
from kluis.api.deps import NowDep, ServicesDep, TraceDep
from vault.services import Context

router = APIRouter(prefix="/api/v1/me", tags=["resident"])

PROBLEM: dict[str, Any] = {"model": None, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request", **PROBLEM},
    401: {"description": "Missing, invalid or expired resident token", **PROBLEM},
}
ID = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="An opaque id.")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=100)]


class DepartmentPublic(BaseModel):
    code: str
    name: str


class PurposePublic(BaseModel):
    code: str
    description_nl: str
    description_en: str
    legal_basis: str = Field(description="GDPR art. 6(1) basis: consent, legal_obligation, public_task...")


class ConsentRequestPublic(BaseModel):
    id: str
    status: Literal["pending", "approved", "denied", "expired"]
    department: DepartmentPublic
    purpose: PurposePublic
    categories: list[str]
    writable_categories: list[str] = Field(description="Categories the department could be allowed to write.")
    duration_days: int = Field(description="How long the department asks access for, at most.")
    binding_message: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    grant_id: str | None

    @classmethod
    def of(cls, view: RequestView) -> ConsentRequestPublic:
        return cls(
            id=view.id,
            status=view.status,
            department=DepartmentPublic(code=view.department_code, name=view.department_name),
            purpose=PurposePublic(
                code=view.purpose_code,
                description_nl=view.purpose_description_nl,
                description_en=view.purpose_description_en,
                legal_basis=view.legal_basis,
            ),
            categories=list(view.categories),
            writable_categories=list(view.writable_categories),
            duration_days=view.duration_days,
            binding_message=view.binding_message,
            created_at=view.created_at,
            expires_at=view.expires_at,
            decided_at=view.decided_at,
            grant_id=view.grant_id,
        )


class GrantPublic(BaseModel):
    id: str
    status: Literal["active", "revoked", "expired"]
    department: DepartmentPublic
    purpose: PurposePublic
    categories: list[str]
    may_write: list[str]
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    request_id: str

    @classmethod
    def of(cls, view: GrantView) -> GrantPublic:
        return cls(
            id=view.id,
            status=view.status,
            department=DepartmentPublic(code=view.department_code, name=view.department_name),
            purpose=PurposePublic(
                code=view.purpose_code,
                description_nl=view.purpose_description_nl,
                description_en=view.purpose_description_en,
                legal_basis=view.legal_basis,
            ),
            categories=list(view.categories),
            may_write=list(view.may_write),
            valid_from=view.valid_from,
            valid_until=view.valid_until,
            revoked_at=view.revoked_at,
            request_id=view.request_id,
        )


class ConsentRequestList(BaseModel):
    items: list[ConsentRequestPublic]
    next_cursor: str | None


class GrantList(BaseModel):
    items: list[GrantPublic]
    next_cursor: str | None


class Approval(BaseModel):
    """Approve as asked (an empty body), or narrower."""

    model_config = ConfigDict(extra="forbid")

    categories: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=20, description="Fewer categories than asked; default: all asked."
    )
    valid_until: datetime | None = Field(
        default=None, description="An earlier end than asked (with a time zone); default: as asked."
    )
    allow_write: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=20, description="Approved categories the department may also write."
    )


def _ctx(trace: Any, now: datetime) -> Context:
    # The service names the resident in the audit entry by their audit pseudonym.
    return Context(actor=Actor(type="resident", id="self"), trace=trace, now=now)


def _request_page(page: Page) -> ConsentRequestList:
    return ConsentRequestList(
        items=[ConsentRequestPublic.of(v) for v in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/consent-requests",
    response_model=ConsentRequestList,
    responses=ERRORS,
    summary="The consent requests addressed to me, newest first",
)
def list_requests(
    resident: ResidentDep,
    services: ServicesDep,
    now: NowDep,
    status: Literal["pending", "approved", "denied", "expired"] | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ConsentRequestList:
    with services.db.read_session() as session:
        page = services.consent.requests(session, resident, now, status=status, cursor=cursor, limit=limit)
    return _request_page(page)


@router.get(
    "/consent-requests/{request_id}",
    response_model=ConsentRequestPublic,
    responses={**ERRORS, 404: {"description": "No such request", **PROBLEM}},
    summary="One consent request",
)
def get_request(
    request_id: ID, resident: ResidentDep, services: ServicesDep, now: NowDep
) -> ConsentRequestPublic:
    with services.db.read_session() as session:
        view = services.consent.request(session, resident, request_id, now)
    return ConsentRequestPublic.of(view)


@router.post(
    "/consent-requests/{request_id}/approve",
    response_model=GrantPublic,
    responses={
        **ERRORS,
        404: {"description": "No such request", **PROBLEM},
        409: {"description": "The request is no longer pending", **PROBLEM},
        422: {"description": "The narrowing is not narrower", **PROBLEM},
    },
    summary="Approve a request, as asked or narrower; returns the grant",
)
def approve(
    request_id: ID,
    resident: ResidentDep,
    services: ServicesDep,
    trace: TraceDep,
    now: NowDep,
    approval: Annotated[Approval | None, Body()] = None,
) -> GrantPublic:
    approval = approval or Approval()
    with services.db.session() as session:
        view = services.consent.approve(
            session,
            _ctx(trace, now),
            resident,
            request_id,
            categories=approval.categories,
            valid_until=approval.valid_until,
            allow_write=approval.allow_write,
        )
    return GrantPublic.of(view)


@router.post(
    "/consent-requests/{request_id}/deny",
    response_model=ConsentRequestPublic,
    responses={
        **ERRORS,
        404: {"description": "No such request", **PROBLEM},
        409: {"description": "The request is no longer pending", **PROBLEM},
    },
    summary="Deny a request",
)
def deny(
    request_id: ID, resident: ResidentDep, services: ServicesDep, trace: TraceDep, now: NowDep
) -> ConsentRequestPublic:
    with services.db.session() as session:
        view = services.consent.deny(session, _ctx(trace, now), resident, request_id)
    return ConsentRequestPublic.of(view)


@router.get(
    "/grants",
    response_model=GrantList,
    responses=ERRORS,
    summary="My grants (active, revoked and expired), newest first",
)
def list_grants(
    resident: ResidentDep, services: ServicesDep, now: NowDep, cursor: Cursor = None, limit: Limit = 50
) -> GrantList:
    with services.db.read_session() as session:
        page = services.consent.grants(session, resident, now, cursor=cursor, limit=limit)
    return GrantList(items=[GrantPublic.of(v) for v in page.items], next_cursor=page.next_cursor)


@router.post(
    "/grants/{grant_id}/revoke",
    response_model=GrantPublic,
    responses={**ERRORS, 404: {"description": "No such grant", **PROBLEM}},
    summary="Revoke a grant: the department's very next request is refused",
)
def revoke(
    grant_id: ID, resident: ResidentDep, services: ServicesDep, trace: TraceDep, now: NowDep
) -> GrantPublic:
    with services.db.session() as session:
        view = services.consent.revoke(session, _ctx(trace, now), resident, grant_id)
    return GrantPublic.of(view)
