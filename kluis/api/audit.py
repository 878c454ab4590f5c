"""The audit log over HTTP: checkpoints and proofs (RFC 6962-shaped), the resident's own access log,
and the privacy officer's search, summary and export.

Who may see what: a checkpoint, a consistency proof and the checkpoint keys are hashes and public
keys, so any authenticated resident or privacy officer of the tenant may fetch them; an entry and
its inclusion proof only the privacy officer of that tenant or the resident the entry is about
(data subject, actor or the person acted for). The tenant always comes from the token.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from audit import leaf, tags
from audit import services as audit_log
from audit.queries import event_json
from audit.schemas import Actor, AuditEvent, AuditQuery, Checkpoint, LogEntry, TraceContext
from consent.errors import InvalidTokenError
from kluis.api.auth import PrivacyOfficerDep, ResidentDep, bearer_token
from kluis.api.deps import MAX_INDEX, IsoDateTime, NowDep, ServicesDep, TraceDep
from kluis.wiring import Services, sign_checkpoint_audited
from vault.errors import InvalidBsnError, NotFoundError

router = APIRouter(prefix="/api/v1", tags=["audit"])
PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid request", **PROBLEM},
    401: {"description": "Missing or invalid token", **PROBLEM},
    403: {"description": "Not yours to see", **PROBLEM},
    404: {"description": "Not found", **PROBLEM},
}
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class AuditReader:
    """A privacy officer of the tenant, or a resident (identified by their audit pseudonym)."""

    tenant_id: str
    privacy_officer: str | None = None
    pseudonym: str | None = None

    def may_see(self, event: AuditEvent) -> bool:
        if self.privacy_officer is not None:
            return event.tenant == self.tenant_id
        return self.pseudonym is not None and self.pseudonym in {
            event.data_subject_id,
            event.actor.id,
            event.actor.on_behalf_of,
        }


def get_reader(request: Request, services: ServicesDep, now: NowDep) -> AuditReader:
    _scheme, token = bearer_token(request)
    guard = services.oauth.guard
    with services.db.read_session() as session:
        try:
            officer = guard.privacy_officer(session, token, now)
            return AuditReader(tenant_id=officer.tenant_id, privacy_officer=officer.subject)
        except InvalidTokenError:
            resident = guard.resident(session, token, now)
            row = services.vault.resident(session, resident.tenant_id, resident.resident_id)
            return AuditReader(tenant_id=resident.tenant_id, pseudonym=row.audit_pseudonym)


ReaderDep = Annotated[AuditReader, Depends(get_reader)]


class CheckpointPublic(BaseModel):
    tree_size: int
    root_hash: str = Field(description="Base64 SHA-256 Merkle tree head (RFC 9162).")
    jws: str = Field(description="Compact JWS (EdDSA) over origin, tree size, root hash and time.")
    origin: str
    timestamp: str
    kid: str


def latest_checkpoint(
    services: Services, tenant_id: str, now: datetime, trace: TraceContext | None = None
) -> Checkpoint:
    """The latest signed checkpoint; signed on demand (and audited) when the log has grown past it."""
    return sign_checkpoint_audited(services, tenant_id, now, trigger="request", trace=trace)[0]


@router.get(
    "/audit/checkpoint",
    response_model=CheckpointPublic,
    responses=ERRORS,
    summary="The latest signed checkpoint of the tenant's audit log",
)
def checkpoint(reader: ReaderDep, services: ServicesDep, now: NowDep, trace: TraceDep) -> dict[str, object]:
    return latest_checkpoint(services, reader.tenant_id, now, trace).to_json()


@router.get("/audit/jwks.json", summary="Public keys of audit checkpoints (old keys are kept forever)")
def checkpoint_keys(services: ServicesDep) -> dict[str, Any]:
    with services.db.read_session() as session:
        return services.signing.public_jwks(session, "checkpoint")


class EntryPublic(BaseModel):
    seq: int
    leaf_bytes: str = Field(description="Base64 of the leaf exactly as hashed.")
    leaf_hash: str


def _visible_entry(services: Services, reader: AuditReader, seq: int) -> LogEntry:
    """The entry at ``seq`` if this reader may see it; otherwise "not found" (nothing is revealed)."""
    with services.db.read_session() as session:
        found = audit_log.get_entry(session, reader.tenant_id, seq)
    if found is None or not reader.may_see(leaf.decode_leaf(found.leaf_bytes)[1]):
        raise NotFoundError("no such entry")
    return found


@router.get(
    "/audit/entries/{seq}",
    response_model=EntryPublic,
    responses=ERRORS,
    summary="One entry of the log (privacy officer, or the resident it is about)",
)
def entry(
    seq: Annotated[int, Path(ge=0, le=MAX_INDEX)], reader: ReaderDep, services: ServicesDep
) -> dict[str, object]:
    return _visible_entry(services, reader, seq).to_json()


class InclusionPublic(BaseModel):
    leaf_index: int
    tree_size: int
    audit_path: list[str]


@router.get(
    "/audit/proofs/inclusion",
    response_model=InclusionPublic,
    responses=ERRORS,
    summary="Inclusion proof of an entry in the tree of a given size (RFC 6962 shape)",
)
def inclusion(
    reader: ReaderDep,
    services: ServicesDep,
    seq: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    tree_size: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> dict[str, object]:
    _visible_entry(services, reader, seq)
    with services.db.read_session() as session:
        return audit_log.inclusion_proof(session, reader.tenant_id, seq, tree_size).to_json()


class ConsistencyPublic(BaseModel):
    first: int
    second: int
    consistency: list[str]


@router.get(
    "/audit/proofs/consistency",
    response_model=ConsistencyPublic,
    responses=ERRORS,
    summary="Consistency proof between two tree sizes (RFC 6962 shape)",
)
def consistency(
    reader: ReaderDep,
    services: ServicesDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> dict[str, object]:
    with services.db.read_session() as session:
        return audit_log.consistency_proof(session, reader.tenant_id, first, second).to_json()


# -- the resident's own access log -------------------------------------------------------------------
class AccessLogItem(BaseModel):
    seq: int
    entry: dict[str, Any]
    leaf_hash: str
    inclusion_proof: InclusionPublic


class AccessLogPage(BaseModel):
    items: list[AccessLogItem]
    next_cursor: str | None
    checkpoint: CheckpointPublic


@router.get(
    "/me/access-log",
    response_model=AccessLogPage,
    responses=ERRORS,
    summary="Who read or tried to read my data, with inclusion proofs against the latest checkpoint",
)
def access_log(
    resident: ResidentDep,
    services: ServicesDep,
    now: NowDep,
    since: IsoDateTime | None = None,
    until: IsoDateTime | None = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, object]:
    with services.db.read_session() as session:
        pseudonym = services.vault.resident(session, resident.tenant_id, resident.resident_id).audit_pseudonym
    signed = latest_checkpoint(services, resident.tenant_id, now)
    query = AuditQuery(since=since, until=until, department=department, involving=pseudonym)
    items = []
    with services.db.read_session() as session:
        page = audit_log.search(session, resident.tenant_id, query, limit=limit, cursor=cursor)
        for logged in page.entries:
            if logged.seq >= signed.tree_size:
                continue  # newer than the checkpoint: it appears with the next one
            found = audit_log.get_entry(session, resident.tenant_id, logged.seq)
            assert found is not None
            proof = audit_log.inclusion_proof(session, resident.tenant_id, logged.seq, signed.tree_size)
            items.append(
                {
                    "seq": logged.seq,
                    "entry": event_json(logged.seq, logged.event),
                    "leaf_hash": found.to_json()["leaf_hash"],
                    "inclusion_proof": proof.to_json(),
                }
            )
    return {"items": items, "next_cursor": page.next_cursor, "checkpoint": signed.to_json()}


# -- the privacy officer ------------------------------------------------------------------------------
class SearchFilter(BaseModel):
    """Filters of a privacy officer's search. A BSN goes in the body, never in a URL."""

    since: IsoDateTime | None = None
    until: IsoDateTime | None = None
    department: str | None = Field(default=None, max_length=64)
    client_id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=100)
    decision: Literal["allow", "deny"] | None = None
    purpose: str | None = Field(default=None, max_length=64)
    bsn: str | None = Field(
        default=None, pattern=r"^[0-9]{9}$", description="Looked up through the pseudonym."
    )
    trace_id: str | None = Field(default=None, max_length=32)
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)

    def used_filters(self) -> str:
        """The names of the filters used, for the audit entry: never their values (a BSN!)."""
        names = (
            "since",
            "until",
            "department",
            "client_id",
            "name",
            "decision",
            "purpose",
            "bsn",
            "trace_id",
        )
        return ",".join(n for n in names if getattr(self, n) is not None) or "none"


class SearchPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


def _query(services: Services, tenant_id: str, body: SearchFilter) -> AuditQuery:
    subject = None
    if body.bsn:
        with services.db.read_session() as session:
            try:
                subject = services.vault.resident_by_bsn(session, tenant_id, body.bsn).audit_pseudonym
            except (NotFoundError, InvalidBsnError):
                subject = "none"  # an unknown BSN matches nothing (and says nothing)
    return AuditQuery(
        since=body.since,
        until=body.until,
        department=body.department,
        client_id=body.client_id,
        name=body.name,
        decision=body.decision,
        purpose=body.purpose,
        data_subject_id=subject,
        trace_id=body.trace_id,
    )


def _record_officer_act(
    services: Services,
    tenant_id: str,
    subject: str,
    name: str,
    trace: Any,
    now: datetime,
    details: dict[str, str | int | bool | None],
) -> None:
    event = AuditEvent(
        tenant=tenant_id,
        name=name,
        actor=Actor(type="privacy_officer", id=subject),
        trace=trace,
        start_time=now,
        end_time=now,
        status="ok",
        decision="allow",
        details=details,
    )
    with services.db.session() as session:
        audit_log.append(session, event)
        session.commit()


@router.post(
    "/audit/search",
    response_model=SearchPage,
    responses=ERRORS,
    summary="Search the tenant's audit log (privacy officer); every search is audited",
)
def search(
    body: SearchFilter, officer: PrivacyOfficerDep, services: ServicesDep, trace: TraceDep, now: NowDep
) -> dict[str, object]:
    query = _query(services, officer.tenant_id, body)
    _record_officer_act(
        services,
        officer.tenant_id,
        officer.subject,
        tags.LOG_SEARCHED,
        trace,
        now,
        {"filters": body.used_filters()},
    )
    with services.db.read_session() as session:
        page = audit_log.search(session, officer.tenant_id, query, limit=body.limit, cursor=body.cursor)
    return {"items": [event_json(e.seq, e.event) for e in page.entries], "next_cursor": page.next_cursor}


@router.get("/audit/summary", responses=ERRORS, summary="Entries per department per day (privacy officer)")
def summary(
    officer: PrivacyOfficerDep,
    services: ServicesDep,
    since: IsoDateTime | None = None,
    until: IsoDateTime | None = None,
) -> dict[str, object]:
    with services.db.read_session() as session:
        days = audit_log.summary(session, officer.tenant_id, AuditQuery(since=since, until=until))
    return {
        "items": [
            {
                "day": d.day.isoformat(),
                "department": d.department,
                "total": d.total,
                "allowed": d.allowed,
                "denied": d.denied,
            }
            for d in days
        ]
    }


@router.post(
    "/audit/export",
    responses={**ERRORS, 200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    summary="Export a period's entries as CSV or JSON lines (privacy officer); audited",
)
def export(
    body: SearchFilter,
    officer: PrivacyOfficerDep,
    services: ServicesDep,
    trace: TraceDep,
    now: NowDep,
    format: Annotated[Literal["csv", "json"], Query()] = "csv",
) -> Response:
    query = _query(services, officer.tenant_id, body)
    out = io.StringIO()
    with services.db.read_session() as session:
        writer = audit_log.export_csv if format == "csv" else audit_log.export_jsonl
        count = writer(session, officer.tenant_id, query, out)
    _record_officer_act(
        services,
        officer.tenant_id,
        officer.subject,
        tags.LOG_EXPORTED,
        trace,
        now,
        {"format": format, "entries": count},
    )
    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return Response(
        out.getvalue(),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="audit.{"csv" if format == "csv" else "jsonl"}"'
        },
    )
