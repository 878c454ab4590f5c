"""Consent requests and grants: a department asks (CIBA), the resident approves, narrows, denies
or later revokes. Each act and its audit entry commit together.

Request states: ``pending`` → ``approved`` | ``denied`` | ``expired``. A pending request whose
``expires_at`` passed *is* expired; the row is marked (and the expiry audited) the first time
someone acts on it, and every read shows it as expired at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from audit import tags
from audit.schemas import Actor, TraceContext
from consent import auditing
from consent.errors import (
    GrantNotFoundError,
    InvalidAuthorizationDetailsError,
    InvalidCursorError,
    InvalidDecisionError,
    InvalidRequestError,
    OAuthError,
    RequestNotFoundError,
    RequestNotPendingError,
)
from consent.models import ConsentRequest, Department, Grant, Purpose
from consent.schemas import (
    AuthenticatedClient,
    BackchannelRequest,
    BackchannelResponse,
    GrantStatus,
    GrantView,
    OAuthConfig,
    Page,
    RequestStatus,
    RequestView,
    ResidentPrincipal,
)
from vault.bsn import is_valid_bsn
from vault.models import Resident
from vault.services import Context, VaultService, new_id

MIN_REQUEST_SECONDS = 60
MAX_REQUEST_SECONDS = 30 * 24 * 3600
MAX_PAGE = 100


def auth_req_hash(auth_req_id: str) -> bytes:
    return hashlib.sha256(b"kluis-auth-req-v1:" + auth_req_id.encode("utf-8", "surrogatepass")).digest()


def request_status(row: ConsentRequest, now: datetime) -> RequestStatus:
    if row.status == "pending" and now >= row.expires_at:
        return "expired"
    status: RequestStatus = row.status  # type: ignore[assignment]  # stored values are RequestStatus
    return status


def grant_status(grant: Grant, now: datetime) -> GrantStatus:
    if grant.revoked_at is not None:
        return "revoked"
    if now >= grant.valid_until:
        return "expired"
    return "active"


class ConsentService:
    def __init__(self, vault: VaultService, config: OAuthConfig) -> None:
        self.vault = vault
        self.config = config

    # -- the department asks (CIBA backchannel authentication request) ---------------------------
    def backchannel(
        self, session: Session, ctx: Context, client: AuthenticatedClient, request: BackchannelRequest
    ) -> BackchannelResponse:
        """Store a consent request; the answer is the same whether or not the BSN names a resident."""
        try:
            purpose, categories, days, lifetime = self._validate(session, client, request)
        except OAuthError as exc:
            self.refuse(session, ctx, client, exc, request)
            raise
        resident = self._resident(session, client.tenant_id, request.login_hint)
        auth_req_id = secrets.token_urlsafe(32)
        row = ConsentRequest(
            id=new_id(),
            tenant_id=client.tenant_id,
            client_id=client.client_id,
            department_id=client.department_id,
            resident_id=resident.id if resident is not None else None,
            auth_req_hash=auth_req_hash(auth_req_id),
            purpose_code=purpose.code,
            categories=list(categories),
            duration_days=days,
            binding_message=request.binding_message,
            status="pending",
            interval=self.config.poll_interval,
            expires_at=ctx.now + timedelta(seconds=lifetime),
            created_at=ctx.now,
        )
        session.add(row)
        session.flush()
        auditing.record(
            session,
            ctx,
            client.tenant_id,
            tags.REQUEST_CREATED,
            resident=resident,
            client_id=client.client_id,
            department=client.department_code,
            purpose=purpose.code,
            legal_basis=purpose.legal_basis,
            categories=categories,
            # Whether the BSN named a resident is for the privacy officer only, never the client.
            details={"request": row.id, "resident_known": resident is not None, "duration_days": days},
        )
        session.commit()
        return BackchannelResponse(auth_req_id=auth_req_id, expires_in=lifetime, interval=row.interval)

    def _validate(
        self, session: Session, client: AuthenticatedClient, request: BackchannelRequest
    ) -> tuple[Purpose, tuple[str, ...], int, int]:
        detail = request.detail
        purpose = session.get(Purpose, (client.tenant_id, detail.purpose))
        if purpose is None:
            raise InvalidAuthorizationDetailsError("purpose_not_registered")
        outside = set(detail.categories) - set(purpose.categories)
        if outside:
            raise InvalidAuthorizationDetailsError("category_outside_purpose")
        days = detail.duration_days if detail.duration_days is not None else purpose.max_days
        if not 1 <= days <= purpose.max_days:
            raise InvalidAuthorizationDetailsError("duration_exceeds_purpose")
        if not is_valid_bsn(request.login_hint):
            raise InvalidRequestError("login_hint_invalid", "login_hint must be a valid BSN")
        lifetime = request.requested_expiry or self.config.request_lifetime
        if not MIN_REQUEST_SECONDS <= lifetime <= MAX_REQUEST_SECONDS:
            raise InvalidRequestError("requested_expiry_out_of_range", "requested_expiry is out of range")
        return purpose, tuple(sorted(set(detail.categories))), days, lifetime

    def _resident(self, session: Session, tenant_id: str, bsn: str) -> Resident | None:
        pseudonym = self.vault.bsn_pseudonym(tenant_id, bsn)
        resident = session.exec(
            select(Resident).where(Resident.tenant_id == tenant_id, Resident.bsn_pseudonym == pseudonym)
        ).first()
        if resident is None or resident.erased_at is not None:
            return None
        return resident

    def refuse(
        self,
        session: Session,
        ctx: Context,
        client: AuthenticatedClient,
        exc: OAuthError,
        request: BackchannelRequest | None = None,
    ) -> None:
        """Audit a refused consent request (``consent:request:refused``) and commit."""
        session.rollback()
        auditing.record(
            session,
            ctx,
            client.tenant_id,
            tags.REQUEST_REFUSED,
            client_id=client.client_id,
            department=client.department_code,
            purpose=request.detail.purpose if request else None,
            categories=request.detail.categories if request else (),
            decision="deny",
            reason=exc.reason,
        )
        session.commit()

    # -- the resident looks ----------------------------------------------------------------------
    def requests(
        self,
        session: Session,
        principal: ResidentPrincipal,
        now: datetime,
        *,
        status: RequestStatus | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        stmt = (
            select(ConsentRequest, Department, Purpose)
            .join(Department, col(Department.id) == col(ConsentRequest.department_id))
            .join(
                Purpose,
                and_(
                    col(Purpose.tenant_id) == col(ConsentRequest.tenant_id),
                    col(Purpose.code) == col(ConsentRequest.purpose_code),
                ),
            )
            .where(
                ConsentRequest.tenant_id == principal.tenant_id,
                ConsentRequest.resident_id == principal.resident_id,
            )
        )
        if status == "pending":
            stmt = stmt.where(ConsentRequest.status == "pending", col(ConsentRequest.expires_at) > now)
        elif status == "expired":
            stmt = stmt.where(
                or_(
                    col(ConsentRequest.status) == "expired",
                    and_(col(ConsentRequest.status) == "pending", col(ConsentRequest.expires_at) <= now),
                )
            )
        elif status is not None:
            stmt = stmt.where(ConsentRequest.status == status)
        stmt = _keyset(stmt, ConsentRequest, cursor)
        rows = session.exec(stmt.limit(_limit(limit) + 1)).all()
        grants = self._grant_ids(session, [r.id for r, _d, _p in rows])
        items = [self._request_view(r, d, p, now, grants.get(r.id)) for r, d, p in rows]
        return _page(items, _limit(limit))

    def request(
        self, session: Session, principal: ResidentPrincipal, request_id: str, now: datetime
    ) -> RequestView:
        row = self._own_request(session, principal, request_id)
        department = session.get(Department, row.department_id)
        purpose = session.get(Purpose, (row.tenant_id, row.purpose_code))
        assert department is not None and purpose is not None
        grant_id = self._grant_ids(session, [row.id]).get(row.id)
        return self._request_view(row, department, purpose, now, grant_id)

    def grants(
        self,
        session: Session,
        principal: ResidentPrincipal,
        now: datetime,
        *,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        stmt = (
            select(Grant, Department, Purpose)
            .join(Department, col(Department.id) == col(Grant.department_id))
            .join(
                Purpose,
                and_(
                    col(Purpose.tenant_id) == col(Grant.tenant_id),
                    col(Purpose.code) == col(Grant.purpose_code),
                ),
            )
            .where(Grant.tenant_id == principal.tenant_id, Grant.resident_id == principal.resident_id)
        )
        stmt = _keyset(stmt, Grant, cursor)
        rows = session.exec(stmt.limit(_limit(limit) + 1)).all()
        items = [_grant_view(g, d, p, now) for g, d, p in rows]
        return _page(items, _limit(limit))

    def grant(
        self, session: Session, principal: ResidentPrincipal, grant_id: str, now: datetime
    ) -> GrantView:
        grant = self._own_grant(session, principal, grant_id)
        department = session.get(Department, grant.department_id)
        purpose = session.get(Purpose, (grant.tenant_id, grant.purpose_code))
        assert department is not None and purpose is not None
        return _grant_view(grant, department, purpose, now)

    # -- the resident decides ---------------------------------------------------------------------
    def approve(
        self,
        session: Session,
        ctx: Context,
        principal: ResidentPrincipal,
        request_id: str,
        *,
        categories: Iterable[str] | None = None,
        valid_until: datetime | None = None,
        allow_write: Iterable[str] | None = None,
    ) -> GrantView:
        """Approve a pending request, possibly narrower (fewer categories, an earlier end)."""
        row, resident = self._pending(session, ctx, principal, request_id)
        ctx = auditing.resident_actor(ctx, resident)
        purpose = session.get(Purpose, (row.tenant_id, row.purpose_code))
        department = session.get(Department, row.department_id)
        assert purpose is not None and department is not None
        asked = set(row.categories)
        chosen = set(categories) if categories is not None else asked
        if not chosen or not chosen <= asked:
            raise InvalidDecisionError("approve one or more of the requested categories, and no others")
        latest = ctx.now + timedelta(days=row.duration_days)
        until = valid_until if valid_until is not None else latest
        if until.tzinfo is None:
            raise InvalidDecisionError("valid_until needs a time zone")
        if not ctx.now < until <= latest:
            raise InvalidDecisionError("valid_until must be in the future and not later than requested")
        writable = set(allow_write or ())
        if not writable <= chosen & set(purpose.writable_categories):
            raise InvalidDecisionError("writing can only be allowed for approved, writable categories")
        grant = Grant(
            id=new_id(),
            tenant_id=row.tenant_id,
            resident_id=resident.id,
            department_id=row.department_id,
            department_code=department.code,
            client_id=row.client_id,
            request_id=row.id,
            purpose_code=purpose.code,
            legal_basis=purpose.legal_basis,
            categories=sorted(chosen),
            may_write=sorted(writable),
            valid_from=ctx.now,
            valid_until=until,
            created_at=ctx.now,
        )
        row.status = "approved"
        row.decided_at = ctx.now
        session.add(row)
        session.add(grant)
        session.flush()
        auditing.record(
            session,
            ctx,
            row.tenant_id,
            tags.REQUEST_APPROVED,
            resident=resident,
            grant=grant,
            categories=grant.categories,
            decision="allow",
            details={
                "request": row.id,
                "narrowed": chosen != asked or until < latest,
                "valid_until": until.isoformat(),
                "may_write": ",".join(grant.may_write) or None,
            },
        )
        session.commit()
        return _grant_view(grant, department, purpose, ctx.now)

    def deny(
        self, session: Session, ctx: Context, principal: ResidentPrincipal, request_id: str
    ) -> RequestView:
        row, resident = self._pending(session, ctx, principal, request_id)
        ctx = auditing.resident_actor(ctx, resident)
        department = session.get(Department, row.department_id)
        purpose = session.get(Purpose, (row.tenant_id, row.purpose_code))
        assert department is not None and purpose is not None
        row.status = "denied"
        row.decided_at = ctx.now
        session.add(row)
        auditing.record(
            session,
            ctx,
            row.tenant_id,
            tags.REQUEST_DENIED,
            resident=resident,
            client_id=row.client_id,
            department=department.code,
            purpose=purpose.code,
            legal_basis=purpose.legal_basis,
            categories=row.categories,
            decision="deny",
            details={"request": row.id},
        )
        session.commit()
        return self._request_view(row, department, purpose, ctx.now, None)

    def revoke(
        self, session: Session, ctx: Context, principal: ResidentPrincipal, grant_id: str
    ) -> GrantView:
        """Revoke a grant (GDPR art. 7(3)): the very next request with any of its tokens is refused."""
        grant = self._own_grant(session, principal, grant_id)
        resident = session.get(Resident, grant.resident_id)
        assert resident is not None
        ctx = auditing.resident_actor(ctx, resident)
        if grant.revoked_at is None:
            grant.revoked_at = ctx.now
            grant.revoked_by = "resident"
            grant.refresh_hash = None
            session.add(grant)
            auditing.record(
                session,
                ctx,
                grant.tenant_id,
                tags.GRANT_REVOKED,
                resident=resident,
                grant=grant,
                categories=grant.categories,
                details={"revoked_by": "resident"},
            )
            session.commit()
        department = session.get(Department, grant.department_id)
        purpose = session.get(Purpose, (grant.tenant_id, grant.purpose_code))
        assert department is not None and purpose is not None
        return _grant_view(grant, department, purpose, ctx.now)

    def end_unfetched_grant(self, session: Session, trace: TraceContext, now: datetime, grant: Grant) -> bool:
        """Revoke, by the system and audited, the grant of an approved request whose token was never
        fetched within the request's ``expires_in`` and one poll interval: no token can come of it
        any more (uncommitted). A compare and set: of two late polls, a sweep on two nodes, or a
        resident's revoke that crosses it, one ends the grant and writes the entry; False for the
        others."""
        never_fetched = select(ConsentRequest.id).where(
            col(ConsentRequest.id) == grant.request_id, col(ConsentRequest.token_issued_at).is_(None)
        )
        ended = session.execute(
            update(Grant)
            .where(
                col(Grant.id) == grant.id,
                col(Grant.revoked_at).is_(None),
                # ... and a poll that claimed the token meanwhile wins: its grant stays.
                col(Grant.request_id).in_(never_fetched),
            )
            .values(revoked_at=now, revoked_by="system", refresh_hash=None)
        )
        if getattr(ended, "rowcount", 0) != 1:
            return False
        session.refresh(grant)
        auditing.record(
            session,
            Context(actor=Actor(type="system", id="kluis:consent"), trace=trace, now=now),
            grant.tenant_id,
            tags.GRANT_REVOKED,
            resident=session.get(Resident, grant.resident_id),
            grant=grant,
            categories=grant.categories,
            reason="auth_req_id_expired",
            details={"revoked_by": "system"},
        )
        return True

    def end_unfetched(self, reader: Session, writer: Session, now: datetime) -> int:
        """``end_unfetched_grant`` for every grant still running whose department never came back
        for its token (housekeeping: the late poll does it too, but a department may never poll
        again): found in ``reader`` (no write lock held for the search), each ended in its own
        transaction of ``writer``. Grants that ended on their own, or of an erased resident, stay as
        they are. The number ended."""
        rows = reader.exec(
            select(Grant, ConsentRequest)
            .join(ConsentRequest, col(ConsentRequest.id) == col(Grant.request_id))
            .join(Resident, col(Resident.id) == col(Grant.resident_id))
            .where(
                col(Grant.revoked_at).is_(None),
                col(Grant.valid_until) > now,
                col(Resident.erased_at).is_(None),
                col(ConsentRequest.status) == "approved",
                col(ConsentRequest.token_issued_at).is_(None),
                col(ConsentRequest.expires_at) < now,
            )
        ).all()
        ended = 0
        for found, request in rows:
            if now < request.expires_at + timedelta(seconds=request.interval):
                continue
            grant = writer.get(Grant, found.id)
            if grant is not None and self.end_unfetched_grant(writer, TraceContext.new(), now, grant):
                ended += 1
            writer.commit()
        return ended

    def expire(self, session: Session, ctx: Context, row: ConsentRequest) -> None:
        """Mark a pending request past its ``expires_at`` as expired, audited (in the caller's
        transaction; the caller commits)."""
        row.status = "expired"
        session.add(row)
        resident = session.get(Resident, row.resident_id) if row.resident_id else None
        department = session.get(Department, row.department_id)
        auditing.record(
            session,
            ctx,
            row.tenant_id,
            tags.REQUEST_EXPIRED,
            resident=resident,
            client_id=row.client_id,
            department=department.code if department else None,
            purpose=row.purpose_code,
            categories=row.categories,
            details={"request": row.id},
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _own_request(self, session: Session, principal: ResidentPrincipal, request_id: str) -> ConsentRequest:
        row = session.get(ConsentRequest, request_id) if len(request_id) <= 32 else None
        if row is None or row.tenant_id != principal.tenant_id or row.resident_id != principal.resident_id:
            raise RequestNotFoundError  # another resident's request does not exist, for you
        return row

    def _own_grant(self, session: Session, principal: ResidentPrincipal, grant_id: str) -> Grant:
        grant = session.get(Grant, grant_id) if len(grant_id) <= 32 else None
        if (
            grant is None
            or grant.tenant_id != principal.tenant_id
            or grant.resident_id != principal.resident_id
        ):
            raise GrantNotFoundError
        return grant

    def _pending(
        self, session: Session, ctx: Context, principal: ResidentPrincipal, request_id: str
    ) -> tuple[ConsentRequest, Resident]:
        row = self._own_request(session, principal, request_id)
        resident = session.get(Resident, principal.resident_id)
        if resident is None or resident.erased_at is not None:
            raise RequestNotPendingError
        if row.status == "pending" and ctx.now >= row.expires_at:
            self.expire(session, auditing.resident_actor(ctx, resident), row)
            session.commit()
        if row.status != "pending":
            raise RequestNotPendingError
        return row, resident

    def _grant_ids(self, session: Session, request_ids: list[str]) -> dict[str, str]:
        if not request_ids:
            return {}
        rows = session.exec(
            select(Grant.request_id, Grant.id).where(col(Grant.request_id).in_(request_ids))
        ).all()
        return dict(rows)

    def _request_view(
        self,
        row: ConsentRequest,
        department: Department,
        purpose: Purpose,
        now: datetime,
        grant_id: str | None,
    ) -> RequestView:
        return RequestView(
            id=row.id,
            status=request_status(row, now),
            department_code=department.code,
            department_name=department.name,
            purpose_code=purpose.code,
            purpose_description_nl=purpose.description_nl,
            purpose_description_en=purpose.description_en,
            legal_basis=purpose.legal_basis,
            categories=tuple(row.categories),
            writable_categories=tuple(c for c in purpose.writable_categories if c in row.categories),
            duration_days=row.duration_days,
            binding_message=row.binding_message,
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            grant_id=grant_id,
        )


def _grant_view(grant: Grant, department: Department, purpose: Purpose, now: datetime) -> GrantView:
    return GrantView(
        id=grant.id,
        status=grant_status(grant, now),
        department_code=department.code,
        department_name=department.name,
        purpose_code=purpose.code,
        purpose_description_nl=purpose.description_nl,
        purpose_description_en=purpose.description_en,
        legal_basis=grant.legal_basis,
        categories=tuple(grant.categories),
        may_write=tuple(grant.may_write),
        valid_from=grant.valid_from,
        valid_until=grant.valid_until,
        revoked_at=grant.revoked_at,
        request_id=grant.request_id,
        created_at=grant.created_at,
    )


# -- keyset pagination: newest first, the cursor names the last (created_at, id) seen ------------
def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def encode_cursor(created_at: datetime, item_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        created, item_id = json.loads(raw)
        when = datetime.fromisoformat(created)
    except (binascii.Error, UnicodeError, ValueError, TypeError):
        raise InvalidCursorError from None
    if when.tzinfo is None or not isinstance(item_id, str):
        raise InvalidCursorError
    return when, item_id


def _keyset(stmt: Any, model: Any, cursor: str | None) -> Any:
    if cursor:
        when, item_id = decode_cursor(cursor)
        stmt = stmt.where(
            or_(
                col(model.created_at) < when,
                and_(col(model.created_at) == when, col(model.id) < item_id),
            )
        )
    return stmt.order_by(col(model.created_at).desc(), col(model.id).desc())


def _page(items: list[RequestView] | list[GrantView], limit: int) -> Page:
    if len(items) <= limit:
        return Page(items=list(items), next_cursor=None)
    last = items[limit - 1]
    return Page(items=list(items[:limit]), next_cursor=encode_cursor(last.created_at, last.id))
