"""DPoP at the resource server: a token bound to a key (``cnf.jkt``) needs a fresh proof per request.

The proof's signature, method, URL, age, access-token hash and key thumbprint are checked in
``consent.dpop``; its ``jti`` is then remembered in the database (shared by every node) so that a
captured proof cannot be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from audit.schemas import TraceContext
from consent.dpop import MAX_AGE_SECONDS, DpopProofRefusedError, verify_proof
from consent.errors import InvalidDpopProofError
from consent.models import UsedAssertion
from consent.resource import GrantFetcher, Refusal
from kluis.api.auth import AsyncGrantFetcher, bearer_token, record_refusal, resolve_grant
from kluis.api.deps import services_of, trace_of
from kluis.api.ratelimit import RateLimitedError
from kluis.wiring import Services, utcnow
from vault.schemas import AccessGrant
from vault.services import Context


def request_url(request: Request, public_base: str) -> str:
    """The URL the client called, as seen through the configured public base URL."""
    return public_base.rstrip("/") + request.url.path


@dataclass(frozen=True, slots=True)
class DepartmentAccess:
    """What a data-API endpoint needs: the live, rate-limited, proof-checked grant and the context."""

    grant: AccessGrant
    services: Services
    trace: TraceContext
    now: datetime

    @property
    def ctx(self) -> Context:
        return Context(actor=self.grant.actor, trace=self.trace, now=self.now)


async def department_access(request: Request) -> DepartmentAccess:
    """One dependency for the whole data API, on purpose: FastAPI resolves each (sub-)dependency
    with a fixed overhead that, with the six small ones this replaced, cost more than the read
    itself (docs/performance.md)."""
    return await department_access_fetching(request, None)


async def department_access_fetching(
    request: Request, fetch: GrantFetcher | None, fetch_async: AsyncGrantFetcher | None = None
) -> DepartmentAccess:
    """``department_access`` with the grant read by ``fetch`` or ``fetch_async`` (see
    ``resolve_grant``)."""
    services = services_of(request)
    trace = trace_of(request)
    now = utcnow()
    grant = await resolve_grant(request, services, trace, now, fetch, fetch_async)
    return DepartmentAccess(await checked_grant(grant, request, services, trace, now), services, trace, now)


async def checked_grant(
    grant: AccessGrant, request: Request, services: Services, trace: TraceContext, now: datetime
) -> AccessGrant:
    """Per-client rate limit, then the DPoP proof of a sender-constrained token. Both refusals are
    audited like a refused token: the request carried a valid token tied to a grant."""
    wait = services.rate_limiter.hit(
        f"client:{grant.client_id}", services.settings.rate_limit_per_minute, now.timestamp()
    )
    if wait is not None:
        error = RateLimitedError(wait)
        # One entry per client and minute (on each node), not one per refused request: a client
        # over its limit must not be able to write the log at the rate it sends.
        minute = int(now.timestamp()) // 60
        if services.rate_limit_audited.get(grant.client_id) != minute:
            services.rate_limit_audited[grant.client_id] = minute
            # The client's entry, not the resident's whose read happened to cross the limit.
            refusal = Refusal(
                error, "rate_limited", verified=True, tenant_id=grant.tenant_id, client_id=grant.client_id
            )
            await record_refusal(services, trace, now, refusal)
        raise error
    if grant.dpop_jkt is None:
        return grant  # the common case: no thread hop, no database
    try:
        return await run_in_threadpool(_check_proof, grant, request, services, now)
    except InvalidDpopProofError as exc:
        refused = DpopProofRefusedError(exc.reason)
        await record_refusal(services, trace, now, Refusal.of_access(grant, refused, exc.reason))
        raise refused from None


def _check_proof(grant: AccessGrant, request: Request, services: Services, now: datetime) -> AccessGrant:
    assert grant.dpop_jkt is not None
    proofs = request.headers.getlist("dpop")
    if len(proofs) != 1:
        raise InvalidDpopProofError("dpop_proof_missing")
    _scheme, token = bearer_token(request, ("dpop",))
    proof = verify_proof(
        proofs[0],
        method=request.method,
        url=request_url(request, services.settings.issuer),
        now=now,
        access_token=token,
        expected_jkt=grant.dpop_jkt,
    )
    scope = f"dpop:{grant.client_id}"[:64]
    with services.db.session() as session:
        if session.get(UsedAssertion, (scope, proof.jti)) is not None:
            raise InvalidDpopProofError("dpop_proof_replayed")
        session.add(
            UsedAssertion(
                client_id=scope, jti=proof.jti, expires_at=now + timedelta(seconds=2 * MAX_AGE_SECONDS)
            )
        )
        try:
            session.commit()
        except IntegrityError as exc:  # the same proof, at the same moment, on another node
            raise InvalidDpopProofError("dpop_proof_replayed") from exc
    return grant


AccessDep = Annotated[DepartmentAccess, Depends(department_access)]
