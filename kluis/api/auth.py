"""Bearer-token dependencies for the routers: glue between HTTP and ``consent.resource``.

- ``resolve_grant``: a department's access token → the live ``AccessGrant`` (401 problem+json with
  ``WWW-Authenticate: Bearer error="invalid_token"`` for a token that cannot be used, 403 when the
  grant no longer allows access). A refusal that can be tied to a client is audited
  (``consent:token:refused``) in its own committed transaction before the error is raised. The
  data API's one dependency, ``kluis.api.dpop.AccessDep``, calls it before rate limit and DPoP.
- ``ResidentDep``: a resident token → ``ResidentPrincipal(tenant_id, resident_id)``.
- ``PrivacyOfficerDep``: a privacy-officer token → ``PrivacyOfficerPrincipal(tenant_id, subject)``.

The tenant always comes from the verified token, never from the URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from audit.schemas import Actor, TraceContext
from consent.errors import InvalidTokenError
from consent.models import Grant
from consent.resource import GrantFetcher, Refusal
from consent.schemas import PrivacyOfficerPrincipal, ResidentPrincipal, VerifiedToken
from kluis.api.deps import NowDep, ServicesDep
from kluis.wiring import Services
from vault.schemas import AccessGrant
from vault.services import Context

AsyncGrantFetcher = Callable[[VerifiedToken], Awaitable["tuple[Grant, datetime | None, bool] | None"]]


def bearer_token(request: Request, schemes: tuple[str, ...] = ("bearer",)) -> tuple[str, str]:
    """``(scheme, token)`` from ``Authorization``, or ``InvalidTokenError("token_missing")``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in schemes or not token:
        raise InvalidTokenError("token_missing")
    return scheme.lower(), token


async def resolve_grant(
    request: Request,
    services: Services,
    trace: TraceContext,
    now: datetime,
    fetch: GrantFetcher | None = None,
    fetch_async: AsyncGrantFetcher | None = None,
) -> AccessGrant:
    """The live grant behind the request's access token; refusals tied to a client are audited.

    ``fetch`` reads the grant (default: ``services.lean.grant``); the record read passes one that
    reads the record in the same statement (``kluis.hotpath.RecordPrefetch``). ``fetch_async``, on
    PostgreSQL, reads it on the event loop instead."""
    scheme, token = bearer_token(request, ("bearer", "dpop"))
    guard = services.oauth.guard
    fetcher = fetch or services.lean.grant
    # Verified before (the common case): no signature check and no ORM session, only the live grant.
    cached = services.oauth.tokens.cached_access_token(token, now)
    checked = cached if cached is not None else await verified_once(services, token, now)
    outcome: AccessGrant | Refusal
    if isinstance(checked, Refusal):
        outcome = checked
    elif fetch_async is not None:
        # PostgreSQL's record read: the one look-up awaited on the loop (no thread, no session).
        outcome = guard.decide_found(checked, now, await fetch_async(checked))
    elif services.db.is_sqlite:
        # On SQLite the look-up takes microseconds, cheaper inline than a hop to the thread pool.
        outcome = guard.decide_fetched(checked, now, fetcher)
    else:
        outcome = await run_in_threadpool(guard.decide_fetched, checked, now, fetcher)
    if not isinstance(outcome, Refusal):
        # RFC 9449 §7.1: a DPoP-bound token is never accepted as a plain bearer token, and the
        # DPoP scheme is only for bound tokens. (The proof itself is checked by the data API.)
        bound = outcome.dpop_jkt is not None
        if bound != (scheme == "dpop"):
            reason = "token_scheme_mismatch"
            outcome = Refusal.of_access(outcome, InvalidTokenError(reason), reason)
    if isinstance(outcome, Refusal):
        await record_refusal(services, trace, now, outcome)
        raise outcome.error
    return outcome


async def record_refusal(services: Services, trace: TraceContext, now: datetime, refusal: Refusal) -> None:
    """Audit ``refusal`` (``consent:token:refused``) in its own committed transaction."""
    ctx = Context(actor=Actor(type="client", id=refusal.client_id or "unknown"), trace=trace, now=now)

    def record() -> None:
        with services.db.session() as session:
            services.oauth.guard.record(session, ctx, refusal)

    await run_in_threadpool(record)


async def verified_once(services: Services, token: str, now: datetime) -> VerifiedToken | Refusal:
    """``token`` verified (in the thread pool: a session and the signature), once for a burst of
    its first reads.

    A department that starts with a new token at concurrency 16 sent 16 first reads at once, and
    on PostgreSQL each verified the token in a thread of its own: 16 threads contending with the
    loop for the GIL, 50-80 ms per read on a slow machine (docs/performance.md, item 21). Now the
    first read verifies and the others wait for it, then take the verified claims from the token
    cache with their own ``now`` (its expiry rule, not a shared result). If the cache has nothing
    for them (the token was refused, or the first read was cancelled), each verifies by itself: a
    refused read is still refused, and audited, on its own."""

    def verify() -> VerifiedToken | Refusal:
        # Its session (and pooled connection) ends before the grant's look-up takes one: a burst of
        # first reads each holding one while waiting for another emptied the pool for good.
        with services.db.read_session() as session:
            return services.oauth.guard.verify(session, token, now)

    running = services.first_verifications.get(token)
    if running is not None:
        await asyncio.wait([running])  # never cancels the first read's verification
        cached = services.oauth.tokens.cached_access_token(token, now)
        return cached if cached is not None else await run_in_threadpool(verify)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    services.first_verifications[token] = done
    try:
        return await run_in_threadpool(verify)
    finally:
        del services.first_verifications[token]
        done.set_result(None)


def get_resident(request: Request, services: ServicesDep, now: NowDep) -> ResidentPrincipal:
    _scheme, token = bearer_token(request)
    with services.db.read_session() as session:
        return services.oauth.guard.resident(session, token, now)


def get_privacy_officer(request: Request, services: ServicesDep, now: NowDep) -> PrivacyOfficerPrincipal:
    _scheme, token = bearer_token(request)
    with services.db.read_session() as session:
        return services.oauth.guard.privacy_officer(session, token, now)


ResidentDep = Annotated[ResidentPrincipal, Depends(get_resident)]
PrivacyOfficerDep = Annotated[PrivacyOfficerPrincipal, Depends(get_privacy_officer)]
