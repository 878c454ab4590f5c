"""The department data API: ``/api/v1/records``. The resident always comes from the token's grant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kluis.api.deps import NowDep, ServicesDep, TraceDep
from kluis.api.dpop import CheckedGrantDep as GrantDep
from vault.schemas import AccessGrant, RecordContent, RecordSummary
from vault.services import Context, ReadOutcome

router = APIRouter(prefix="/api/v1", tags=["records"])

CategoryPath = Annotated[
    str,
    Path(
        description="Category code, e.g. `inkomen`.",
        pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
        max_length=64,
    ),
]
PROBLEM: dict[str, Any] = {"model": None, "content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request", **PROBLEM},
    401: {"description": "Missing, invalid or expired access token", **PROBLEM},
    403: {"description": "The grant does not cover this request", **PROBLEM},
    404: {"description": "No such record", **PROBLEM},
    413: {"description": "Request body too large", **PROBLEM},
    429: {"description": "Rate limit reached", **PROBLEM},
}


class RecordSummaryPublic(BaseModel):
    category: str
    version: int
    updated_at: datetime
    source: str

    @classmethod
    def of(cls, summary: RecordSummary) -> RecordSummaryPublic:
        return cls(
            category=summary.category,
            version=summary.version,
            updated_at=summary.updated_at,
            source=summary.source,
        )


class RecordList(BaseModel):
    items: list[RecordSummaryPublic]


class RecordPublic(BaseModel):
    category: str
    version: int
    updated_at: datetime
    source: str
    data: dict[str, Any] = Field(description="The record, as validated against the category's JSON Schema.")

    @classmethod
    def of(cls, content: RecordContent) -> RecordPublic:
        return cls(
            category=content.category,
            version=content.version,
            updated_at=content.updated_at,
            source=content.source,
            data=content.data,
        )


def _ctx(grant: AccessGrant, trace: Any, now: datetime) -> Context:
    return Context(actor=grant.actor, trace=trace, now=now)


def _fields(fields: str | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    return tuple(sorted({f.strip() for f in fields.split(",") if f.strip()}))


FieldsQuery = Annotated[
    str | None,
    Query(
        description="Comma-separated top-level fields to return (data minimisation); recorded in the audit "
        "entry.",
        max_length=1000,
        pattern=r"^[A-Za-z0-9_,.\- ]*$",
    ),
]


@router.get(
    "/records",
    response_model=RecordList,
    responses=ERRORS,
    summary="The categories this token may read for its resident (no content)",
)
def list_records(grant: GrantDep, services: ServicesDep, trace: TraceDep, now: NowDep) -> RecordList:
    with services.db.session() as session:
        summaries = services.vault.list_granted(session, _ctx(grant, trace, now), grant)
    return RecordList(items=[RecordSummaryPublic.of(s) for s in summaries])


@router.get(
    "/records/{category}",
    response_model=RecordPublic,
    responses=ERRORS,
    summary="The current record of a category, decrypted",
)
async def read_record(
    category: CategoryPath,
    grant: GrantDep,
    services: ServicesDep,
    trace: TraceDep,
    now: NowDep,
    fields: FieldsQuery = None,
) -> RecordPublic:
    # The hot path: decide and decrypt in a read transaction, then hand the audit entry to the group
    # committer and answer only once it is durable (one fsync per batch, not per request).
    ctx = _ctx(grant, trace, now)

    def decide() -> ReadOutcome:
        resident, record, version = services.lean.record(grant.tenant_id, grant.resident_id, category)
        return services.vault.decide_read(
            ctx, grant, category, resident, record, version, fields=_fields(fields)
        )

    # SQLite look-ups take microseconds: cheaper inline than a thread hop. Network round trips to
    # PostgreSQL would stall the event loop, so those run in the thread pool.
    outcome = decide() if services.db.is_sqlite else await run_in_threadpool(decide)
    await services.audit_writer.append(outcome.event)
    return RecordPublic.of(outcome.result())


@router.get(
    "/records/{category}/versions",
    response_model=RecordList,
    responses=ERRORS,
    summary="The versions of a record (no content)",
)
def list_versions(
    category: CategoryPath, grant: GrantDep, services: ServicesDep, trace: TraceDep, now: NowDep
) -> RecordList:
    with services.db.session() as session:
        versions = services.vault.history_granted(session, _ctx(grant, trace, now), grant, category)
    return RecordList(items=[RecordSummaryPublic.of(v) for v in versions])


@router.get(
    "/records/{category}/versions/{version}",
    response_model=RecordPublic,
    responses=ERRORS,
    summary="One past version of a record, decrypted",
)
def read_version(
    category: CategoryPath,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    grant: GrantDep,
    services: ServicesDep,
    trace: TraceDep,
    now: NowDep,
    fields: FieldsQuery = None,
) -> RecordPublic:
    with services.db.session() as session:
        ctx = _ctx(grant, trace, now)
        if not grant.may_read_history:
            raise services.vault.deny(
                session, ctx, grant, "vault:record:read", "history_not_granted", [category]
            )
        content = services.vault.read_granted(
            session, ctx, grant, category, version=version, fields=_fields(fields)
        )
    return RecordPublic.of(content)


@router.put(
    "/records/{category}",
    response_model=RecordSummaryPublic,
    responses={
        **ERRORS,
        422: {"description": "The document does not match the category's schema", **PROBLEM},
    },
    summary="Write a new version of a record, where the grant allows it",
)
def write_record(
    category: CategoryPath,
    grant: GrantDep,
    services: ServicesDep,
    trace: TraceDep,
    now: NowDep,
    document: Annotated[dict[str, Any], Body(description="The record (a JSON object).")],
) -> RecordSummaryPublic:
    with services.db.session() as session:
        summary = services.vault.write_granted(session, _ctx(grant, trace, now), grant, category, document)
    return RecordSummaryPublic.of(summary)
