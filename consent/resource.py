"""The resource side: bearer tokens in, access decisions out.

``ResourceGuard.check`` turns an access token into the vault's ``AccessGrant``: the token's
signature, type, issuer, audience and times (``TokenService``, cached per token until its ``exp``),
then the grant *live* in the database on every request, in one statement over primary keys
(grant, resident, revoked-token list). A revocation, an expiry or an erasure therefore refuses
the very next request.

A refusal comes back as a ``Refusal`` value naming the error to raise (401 ``InvalidTokenError``
for a token that cannot be used, 403 ``AccessDeniedError`` for a grant that no longer allows the
act) and what is known for the audit entry; ``record`` appends that entry in its own transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import and_
from sqlmodel import Session, col, select

from audit import tags
from audit.schemas import Actor
from consent import auditing
from consent.errors import InvalidTokenError
from consent.models import Client, Department, Grant, RevokedToken
from consent.schemas import PrivacyOfficerPrincipal, ResidentPrincipal, VerifiedToken
from consent.tokens import TokenService, peek_claims
from vault.errors import AccessDeniedError
from vault.models import Resident
from vault.schemas import AccessGrant
from vault.services import Context

# The live grant of a verified token: (grant, the resident's erased_at, whether this token was revoked).
GrantFetcher = Callable[[VerifiedToken], "tuple[Grant, datetime | None, bool] | None"]

log = logging.getLogger("kluis.consent")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused access token: the error for the caller and the facts for the audit entry."""

    error: Exception  # what the caller raises: a domain error, or the HTTP layer's own (a 429)
    reason: str
    verified: bool  # False: the claims below were read from a token whose signature did not check out
    tenant_id: str | None = None
    client_id: str | None = None
    grant_id: str | None = None
    token_hash: str | None = None  # ``jti_hash`` of the token's id, never the token

    @classmethod
    def of_access(cls, grant: AccessGrant, error: Exception, reason: str) -> Refusal:
        """A refusal of a request whose token was verified and whose grant is live, for a reason
        of the request itself (its DPoP proof, its scheme)."""
        return cls(
            error,
            reason,
            verified=True,
            tenant_id=grant.tenant_id,
            client_id=grant.client_id,
            grant_id=grant.grant_id,
            token_hash=grant.token_hash,
        )


def jti_hash(jti: str) -> str:
    """How a token's id appears in audit entries: enough to tell tokens apart, not the id itself."""
    return hashlib.sha256(jti.encode()).hexdigest()[:32]


def _refused(kind: Literal["token", "grant"], reason: str, token: VerifiedToken | None = None) -> Refusal:
    error: InvalidTokenError | AccessDeniedError = (
        InvalidTokenError(reason) if kind == "token" else AccessDeniedError(reason)
    )
    if token is None:
        return Refusal(error, reason, verified=False)
    return Refusal(
        error,
        reason,
        verified=True,
        tenant_id=token.tenant_id,
        client_id=token.client_id,
        grant_id=token.grant_id,
        token_hash=jti_hash(token.jti),
    )


class ResourceGuard:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens

    def check(self, session: Session, token: str, now: datetime) -> AccessGrant | Refusal:
        """The access decision for a department request bearing ``token``, taken at ``now``, on
        one ORM query. (The shell's lean hot path verifies, then reads the live grant its own way
        and hands it to ``decide_fetched``: the decision is ``decide``'s either way.)"""
        verified = self.verify(session, token, now)
        if isinstance(verified, Refusal):
            return verified
        row = session.exec(
            select(Grant, Resident.erased_at, RevokedToken.jti)
            .join(Resident, col(Resident.id) == col(Grant.resident_id))
            .outerjoin(
                RevokedToken,
                and_(col(RevokedToken.jti) == verified.jti, col(RevokedToken.grant_id) == col(Grant.id)),
            )
            .where(col(Grant.id) == verified.grant_id)
        ).first()
        if row is None:
            return _refused("grant", "grant_unknown", verified)
        grant, erased_at, revoked_jti = row
        return self.decide(
            verified, grant, erased_at=erased_at, token_revoked=revoked_jti is not None, now=now
        )

    def verify(self, session: Session, token: str, now: datetime) -> VerifiedToken | Refusal:
        """The token's verified claims (cached until ``exp``), or the refusal to record."""
        try:
            return self.tokens.verify_access_token(session, token, now)
        except InvalidTokenError as exc:
            refusal = _refused("token", exc.reason)
            claims = peek_claims(token)
            client_id = claims.get("client_id") if claims else None
            if isinstance(client_id, str) and 0 < len(client_id) <= 64:
                refusal = dataclasses.replace(refusal, client_id=client_id)
            return refusal

    def decide_fetched(
        self, verified: VerifiedToken, now: datetime, fetch: GrantFetcher
    ) -> AccessGrant | Refusal:
        """``decide`` on the live grant as ``fetch`` reads it."""
        return self.decide_found(verified, now, fetch(verified))

    def decide_found(
        self, verified: VerifiedToken, now: datetime, found: tuple[Grant, datetime | None, bool] | None
    ) -> AccessGrant | Refusal:
        """``decide`` on what a ``GrantFetcher`` read: the grant, its resident's erasure, whether
        this token was revoked (``None``: no such grant)."""
        if found is None:
            return _refused("grant", "grant_unknown", verified)
        grant, erased_at, token_revoked = found
        return self.decide(verified, grant, erased_at=erased_at, token_revoked=token_revoked, now=now)

    @staticmethod
    def decide(
        verified: VerifiedToken,
        grant: Grant,
        *,
        erased_at: datetime | None,
        token_revoked: bool,
        now: datetime,
    ) -> AccessGrant | Refusal:
        """The decision on a verified token and its live grant, however they were read."""
        cutoff = grant.tokens_revoked_before
        # The first failing check decides; "token" refusals are 401, "grant" refusals 403.
        checks: list[tuple[bool, Literal["token", "grant"], str]] = [
            (
                grant.tenant_id != verified.tenant_id
                or grant.client_id != verified.client_id
                or grant.resident_id != verified.resident_id,
                "grant",
                "grant_of_another_client",
            ),
            (
                token_revoked or (cutoff is not None and verified.issued_at <= cutoff.timestamp()),
                "token",
                "token_revoked",
            ),
            (grant.revoked_at is not None, "grant", "grant_revoked"),
            (now >= grant.valid_until, "grant", "grant_expired"),
            (erased_at is not None, "grant", "resident_erased"),
        ]
        for failed, kind, reason in checks:
            if failed:
                return _refused(kind, reason, verified)
        return AccessGrant(
            tenant_id=grant.tenant_id,
            resident_id=grant.resident_id,
            grant_id=grant.id,
            client_id=grant.client_id,
            department=grant.department_code,
            categories=frozenset(grant.categories),
            purpose=grant.purpose_code,
            legal_basis=grant.legal_basis,
            valid_until=grant.valid_until,
            may_write=frozenset(grant.may_write),
            token_hash=jti_hash(verified.jti),
            dpop_jkt=verified.dpop_jkt,
        )

    def record(self, session: Session, ctx: Context, refusal: Refusal) -> None:
        """Audit a refusal (``consent:token:refused``) in the tenant it can be tied to, and commit.

        A token that names no client of ours belongs to no tenant's log: it is only logged.
        """
        tenant_id, client_id = refusal.tenant_id, refusal.client_id
        client = session.get(Client, client_id) if client_id else None
        if client is None or (tenant_id is not None and client.tenant_id != tenant_id):
            log.info("access token refused (%s), not attributable to a tenant", refusal.reason)
            return
        department = session.get(Department, client.department_id)
        grant = session.get(Grant, refusal.grant_id) if refusal.grant_id else None
        if grant is not None and grant.tenant_id != client.tenant_id:
            grant = None
        resident = session.get(Resident, grant.resident_id) if grant is not None else None
        auditing.record(
            session,
            dataclasses.replace(ctx, actor=Actor(type="client", id=client.id)),
            client.tenant_id,
            tags.TOKEN_REFUSED,
            resident=resident,
            grant=grant,
            client_id=client.id,
            department=department.code if department else None,
            decision="deny",
            reason=refusal.reason,
            details={
                "verified": refusal.verified,
                "token": refusal.token_hash,
            },
        )
        session.commit()

    # -- resident and privacy-officer tokens ------------------------------------------------------
    def resident(self, session: Session, token: str, now: datetime) -> ResidentPrincipal:
        claims = self.tokens.verify_user_token(session, token, "resident", now)
        return ResidentPrincipal(tenant_id=claims.tenant_id, resident_id=claims.subject)

    def privacy_officer(self, session: Session, token: str, now: datetime) -> PrivacyOfficerPrincipal:
        claims = self.tokens.verify_user_token(session, token, "privacy_officer", now)
        return PrivacyOfficerPrincipal(tenant_id=claims.tenant_id, subject=claims.subject)
