"""The OAuth 2.0 authorization server, free of any web framework.

Endpoints (the shell's ``kluis/api/oauth.py`` only parses HTTP and calls these):

- backchannel authentication (OpenID CIBA, poll mode) with RFC 9396 authorization details;
- token: ``urn:openid:params:grant-type:ciba`` (the poll) and ``refresh_token`` (rotated on use,
  a reused one switches refreshing off for that grant and revokes its access tokens);
- introspection (RFC 7662) and revocation (RFC 7009), for the calling client's own tokens only;
- metadata (RFC 8414).

authlib has no CIBA and no RAR, so these are ours: small and explicit. Every answer that is not a
token is an ``OAuthError`` subclass naming its RFC 6749 / CIBA error code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from audit import tags
from consent import auditing
from consent.assertions import ALGORITHMS as ASSERTION_ALGORITHMS
from consent.dpop import MAX_AGE_SECONDS as DPOP_MAX_AGE_SECONDS
from consent.errors import (
    AuthorizationPendingError,
    InvalidAuthorizationDetailsError,
    InvalidBindingMessageError,
    InvalidDpopProofError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidTokenError,
    RequestDeniedError,
    RequestExpiredError,
    SlowDownError,
    UnsupportedGrantTypeError,
)
from consent.models import ConsentRequest, Grant, RevokedToken, UsedAssertion, expired
from consent.requests import ConsentService, auth_req_hash, request_status
from consent.resource import Refusal, ResourceGuard
from consent.schemas import (
    CIBA_GRANT,
    RECORDS_TYPE,
    REFRESH_GRANT,
    AuthenticatedClient,
    BackchannelRequest,
    OAuthConfig,
    RecordsDetail,
    TokenResponse,
)
from consent.tokens import ACCESS_TYP, CLOCK_SKEW, TokenService
from vault.models import Resident, SigningKey
from vault.services import Context, VaultService

Form = Mapping[str, Sequence[str]]
CATEGORY = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$")
REFRESH = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
MAX_DETAILS_BYTES = 4096
BINDING_MESSAGE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")


# -- request parsing (RFC 6749 §3.2: no parameter more than once) ---------------------------------
def one(form: Form, name: str, *, required: bool = False) -> str | None:
    values = form.get(name, ())
    if len(values) > 1:
        raise InvalidRequestError("repeated_parameter", f"the parameter {name} is repeated")
    if not values or values[0] == "":
        if required:
            raise InvalidRequestError("missing_parameter", f"the parameter {name} is missing")
        return None
    return values[0]


def parse_authorization_details(raw: str) -> RecordsDetail:
    """Exactly one ``kluis:records`` detail: categories, a purpose code, optionally duration_days."""
    if len(raw) > MAX_DETAILS_BYTES:
        raise InvalidAuthorizationDetailsError("authorization_details_too_large")
    try:
        parsed = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidAuthorizationDetailsError("authorization_details_not_json") from None
    if not isinstance(parsed, list) or len(parsed) != 1 or not isinstance(parsed[0], dict):
        raise InvalidAuthorizationDetailsError(
            "authorization_details_shape", "authorization_details must hold exactly one object"
        )
    detail = parsed[0]
    if detail.get("type") != RECORDS_TYPE:
        raise InvalidAuthorizationDetailsError(
            "authorization_details_type", f"the authorization details type must be {RECORDS_TYPE}"
        )
    unknown = set(detail) - {"type", "categories", "purpose", "duration_days"}
    if unknown:
        raise InvalidAuthorizationDetailsError("authorization_details_unknown_field")
    categories, purpose, days = detail.get("categories"), detail.get("purpose"), detail.get("duration_days")
    if (
        not isinstance(categories, list)
        or not 1 <= len(categories) <= 20
        or not all(isinstance(c, str) and len(c) <= 64 and CATEGORY.match(c) for c in categories)
    ):
        raise InvalidAuthorizationDetailsError(
            "categories_invalid", "categories must be 1 to 20 category codes"
        )
    if not isinstance(purpose, str) or not 0 < len(purpose) <= 64:
        raise InvalidAuthorizationDetailsError("purpose_invalid", "purpose must be a registered purpose code")
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise InvalidAuthorizationDetailsError("duration_invalid", "duration_days must be a positive integer")
    return RecordsDetail(categories=tuple(categories), purpose=purpose, duration_days=days)


def parse_backchannel(form: Form) -> BackchannelRequest:
    """CIBA §7.1 in poll mode: ``login_hint`` (the BSN), ``authorization_details``, and optionally
    ``binding_message`` and ``requested_expiry``. Hint tokens and signed requests are not supported."""
    for unsupported in ("login_hint_token", "id_token_hint", "request", "user_code"):
        if one(form, unsupported) is not None:
            raise InvalidRequestError("unsupported_parameter", f"{unsupported} is not supported")
    login_hint = one(form, "login_hint", required=True)
    raw_details = one(form, "authorization_details", required=True)
    assert login_hint is not None and raw_details is not None
    detail = parse_authorization_details(raw_details)
    message = one(form, "binding_message")
    if message is not None and not BINDING_MESSAGE.match(message):
        raise InvalidBindingMessageError
    expiry_text = one(form, "requested_expiry")
    expiry: int | None = None
    if expiry_text is not None:
        if not expiry_text.isascii() or not expiry_text.isdigit() or len(expiry_text) > 9:
            raise InvalidRequestError(
                "requested_expiry_invalid", "requested_expiry must be a positive integer"
            )
        expiry = int(expiry_text)
    return BackchannelRequest(
        login_hint=login_hint.strip(), detail=detail, binding_message=message, requested_expiry=expiry
    )


def refresh_hash(secret: str) -> bytes:
    return hashlib.sha256(b"kluis-refresh-v1:" + secret.encode("ascii")).digest()


class OAuthServer:
    def __init__(
        self, vault: VaultService, tokens: TokenService, requests: ConsentService, config: OAuthConfig
    ) -> None:
        self.vault = vault
        self.tokens = tokens
        self.requests = requests
        self.config = config
        self.guard = ResourceGuard(tokens)

    # -- metadata (RFC 8414) ----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        methods = ["private_key_jwt"]
        if self.config.allow_client_secret:
            methods += ["client_secret_basic", "client_secret_post"]
        algs = sorted(ASSERTION_ALGORITHMS)
        return {
            "issuer": self.config.issuer,
            "token_endpoint": self.config.token_endpoint,
            "backchannel_authentication_endpoint": self.config.backchannel_endpoint,
            "jwks_uri": self.config.jwks_uri,
            "introspection_endpoint": self.config.introspection_endpoint,
            "revocation_endpoint": self.config.revocation_endpoint,
            "grant_types_supported": [CIBA_GRANT, REFRESH_GRANT],
            "response_types_supported": [],  # no front-channel authorization endpoint
            "backchannel_token_delivery_modes_supported": ["poll"],
            "backchannel_user_code_parameter_supported": False,
            "authorization_details_types_supported": [RECORDS_TYPE],
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_signing_alg_values_supported": algs,
            "revocation_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_signing_alg_values_supported": algs,
            "access_token_signing_alg_values_supported": ["ES256"],
            "service_documentation": self.config.base_url + "/api/v1/docs",
        }

    # -- token endpoint ---------------------------------------------------------------------------
    def token(
        self,
        session: Session,
        ctx: Context,
        client: AuthenticatedClient,
        form: Form,
        *,
        dpop_jkt: str | None = None,
    ) -> TokenResponse:
        """The token endpoint. ``dpop_jkt`` is the thumbprint of a DPoP proof the web layer verified
        (RFC 9449); the token is then bound to it (``cnf.jkt``). A client registered with
        ``dpop_bound_access_tokens`` gets no token without one (RFC 9449 §5.2)."""
        grant_type = one(form, "grant_type", required=True)
        if client.dpop_bound and dpop_jkt is None:
            raise InvalidDpopProofError("dpop_proof_missing")
        if grant_type == CIBA_GRANT:
            auth_req_id = one(form, "auth_req_id", required=True)
            assert auth_req_id is not None
            return self._poll(session, ctx, client, auth_req_id, dpop_jkt)
        if grant_type == REFRESH_GRANT:
            token = one(form, "refresh_token", required=True)
            assert token is not None
            return self._refresh(session, ctx, client, token, dpop_jkt)
        raise UnsupportedGrantTypeError("unsupported_grant_type")

    def _poll(
        self, session: Session, ctx: Context, client: AuthenticatedClient, auth_req_id: str, jkt: str | None
    ) -> TokenResponse:
        row = None
        if len(auth_req_id) <= 256:
            row = session.exec(
                select(ConsentRequest).where(ConsentRequest.auth_req_hash == auth_req_hash(auth_req_id))
            ).first()
        if row is None or row.client_id != client.client_id:
            # Another client's auth_req_id is as unknown as a made-up one (and audited as such).
            raise self._refuse(session, ctx, client, "auth_req_id_unknown", None)
        if row.last_polled_at is not None and ctx.now < row.last_polled_at + timedelta(seconds=row.interval):
            row.last_polled_at = ctx.now
            session.add(row)
            session.commit()
            raise SlowDownError
        row.last_polled_at = ctx.now
        session.add(row)
        status = request_status(row, ctx.now)
        if status == "expired" and row.status == "pending":
            self.requests.expire(session, ctx, row)
        if status != "approved":
            session.commit()
            raise {
                "pending": AuthorizationPendingError,
                "denied": RequestDeniedError,
                "expired": RequestExpiredError,
            }[status]()
        grant = session.exec(select(Grant).where(Grant.request_id == row.id)).first()
        assert grant is not None
        if row.token_issued_at is not None:
            raise self._refuse(session, ctx, client, "auth_req_id_used", grant)
        if ctx.now >= row.expires_at + timedelta(seconds=row.interval):
            # CIBA §7.3/§11: the auth_req_id lives for its expires_in, approved or not; one poll
            # interval more, so that an approval in the request's last seconds can still be fetched.
            # Later, a leaked id is worth nothing: the client asks again (the grant stays the
            # resident's to revoke).
            # The resident's approval can then never be used: the grant ends too (audited, by the
            # system), so their list of permissions does not keep one that no one can use. (A
            # department that never polls again: housekeeping's end_unfetched sweep.)
            self.requests.end_unfetched_grant(session, ctx.trace, ctx.now, grant)
            self._refuse(session, ctx, client, "auth_req_id_expired", grant, keep=True)
            raise RequestExpiredError
        reason = self._unusable(session, grant, ctx.now)
        if reason is not None:
            raise self._refuse(session, ctx, client, reason, grant)
        claimed = session.execute(
            update(ConsentRequest)
            .where(col(ConsentRequest.id) == row.id, col(ConsentRequest.token_issued_at).is_(None))
            .values(token_issued_at=ctx.now)
        )
        if getattr(claimed, "rowcount", 0) != 1:  # a concurrent poll on another node was first
            raise self._refuse(session, ctx, client, "auth_req_id_used", grant)
        secret = self._rotate_refresh(session, grant, None)
        assert secret is not None
        response = self._issue(session, ctx, client, grant, secret, jkt, via="ciba")
        session.commit()
        return response

    def _refresh(
        self, session: Session, ctx: Context, client: AuthenticatedClient, token: str, jkt: str | None
    ) -> TokenResponse:
        match = REFRESH.match(token)
        grant = session.get(Grant, match.group(1)) if match else None
        if match is None or grant is None or grant.client_id != client.client_id:
            raise self._refuse(session, ctx, client, "refresh_token_unknown", None)
        presented = refresh_hash(match.group(2))
        if grant.refresh_hash is None:
            raise self._refuse(session, ctx, client, "refresh_token_revoked", grant)
        if not hmac.compare_digest(presented, grant.refresh_hash):
            # Only the owning client, authenticated, can get here: it presented an old (rotated)
            # refresh token, so one copy leaked. Stop refreshing and revoke the live access tokens.
            self._stop_refreshing(grant, ctx.now)
            session.add(grant)
            raise self._refuse(session, ctx, client, "refresh_token_reused", grant, keep=True)
        reason = self._unusable(session, grant, ctx.now)
        if reason is not None:
            raise self._refuse(session, ctx, client, reason, grant)
        secret = self._rotate_refresh(session, grant, presented)
        if secret is None:  # a concurrent refresh with the same token won
            raise self._refuse(session, ctx, client, "refresh_token_reused", grant)
        response = self._issue(session, ctx, client, grant, secret, jkt, via="refresh_token")
        session.commit()
        return response

    @staticmethod
    def _stop_refreshing(grant: Grant, now: datetime) -> None:
        grant.refresh_hash = None
        grant.tokens_revoked_before = now

    def _unusable(self, session: Session, grant: Grant, now: datetime) -> str | None:
        if grant.revoked_at is not None:
            return "grant_revoked"
        if now >= grant.valid_until:
            return "grant_expired"
        resident = session.get(Resident, grant.resident_id)
        if resident is None or resident.erased_at is not None:
            return "resident_erased"
        return None

    @staticmethod
    def remember_dpop_proof(session: Session, client: AuthenticatedClient, jti: str, now: datetime) -> None:
        """Refuse a DPoP proof seen before (the same store and scope as the data API's proofs)."""
        scope = f"dpop:{client.client_id}"[:64]
        if session.get(UsedAssertion, (scope, jti)) is not None:
            raise InvalidDpopProofError("dpop_proof_replayed")
        expires = now + timedelta(seconds=2 * DPOP_MAX_AGE_SECONDS)
        session.add(UsedAssertion(client_id=scope, jti=jti, expires_at=expires))
        session.flush()

    @staticmethod
    def _rotate_refresh(session: Session, grant: Grant, old: bytes | None) -> str | None:
        """A new refresh token for ``grant``, replacing ``old`` only if it is still current (an
        atomic compare-and-set, so two nodes cannot both rotate the same token)."""
        secret = secrets.token_urlsafe(32)
        stmt = update(Grant).where(col(Grant.id) == grant.id)
        if old is not None:
            stmt = stmt.where(col(Grant.refresh_hash) == old)
        rotated = session.execute(stmt.values(refresh_hash=refresh_hash(secret)))
        return secret if getattr(rotated, "rowcount", 0) == 1 else None

    def _issue(
        self,
        session: Session,
        ctx: Context,
        client: AuthenticatedClient,
        grant: Grant,
        refresh_secret: str,
        jkt: str | None,
        *,
        via: str,
    ) -> TokenResponse:
        """Sign an access token, with its audit entry (the caller commits)."""
        iat = int(ctx.now.timestamp())
        exp = min(iat + self.config.access_token_lifetime, int(grant.valid_until.timestamp()))
        detail = {
            "type": RECORDS_TYPE,
            "categories": list(grant.categories),
            "purpose": grant.purpose_code,
            "legal_basis": grant.legal_basis,
            "grant_id": grant.id,
            "resident_id": grant.resident_id,
            "may_write": list(grant.may_write),
            "valid_until": int(grant.valid_until.timestamp()),
        }
        jti = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            "iss": self.config.issuer,
            "sub": self.pairwise_subject(grant.tenant_id, grant.department_id, grant.resident_id),
            "aud": self.config.resource,
            "client_id": client.client_id,
            "tenant": grant.tenant_id,
            "jti": jti,
            "iat": iat,
            "exp": exp,
            "authorization_details": [detail],
        }
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        access_token = self.tokens.sign(session, claims, ACCESS_TYP, ctx.now)
        resident = session.get(Resident, grant.resident_id)
        auditing.record(
            session,
            ctx,
            grant.tenant_id,
            tags.TOKEN_ISSUED,
            resident=resident,
            grant=grant,
            categories=grant.categories,
            decision="allow",
            details={"via": via, "token": _jti_hash(jti), "expires_in": exp - iat},
        )
        return TokenResponse(
            access_token=access_token,
            expires_in=exp - iat,
            refresh_token=f"{grant.id}.{refresh_secret}",
            authorization_details=[detail],
            token_type="DPoP" if jkt is not None else "Bearer",
        )

    def pairwise_subject(self, tenant_id: str, department_id: str, resident_id: str) -> str:
        """``sub``: a pseudonym of the resident per department (keyed HMAC), never the BSN."""
        digest = self.vault.keys.pseudonym(
            tenant_id, b"kluis-pairwise-v1:" + department_id.encode() + b":" + resident_id.encode()
        )
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def _refuse(
        self,
        session: Session,
        ctx: Context,
        client: AuthenticatedClient,
        reason: str,
        grant: Grant | None,
        *,
        keep: bool = False,
    ) -> InvalidGrantError:
        """Audit a refused token request (committed) and return the error to raise.

        ``keep`` commits the pending changes with the entry (a reuse that stops refreshing)."""
        if not keep:
            session.rollback()
        resident = session.get(Resident, grant.resident_id) if grant is not None else None
        auditing.record(
            session,
            ctx,
            client.tenant_id,
            tags.TOKEN_REFUSED,
            resident=resident,
            grant=grant,
            client_id=client.client_id,
            department=client.department_code,
            decision="deny",
            reason=reason,
        )
        session.commit()
        return InvalidGrantError(reason)

    # -- resident and privacy-officer tokens, signing keys ----------------------------------------
    def issue_user_token(
        self,
        session: Session,
        ctx: Context,
        *,
        role: Literal["resident", "privacy_officer"],
        tenant_id: str,
        subject: str,
        lifetime: int = 900,
        resident: Resident | None = None,
    ) -> str:
        """A resident or privacy-officer bearer token, audited (``consent:token:issued``), committed."""
        token = self.tokens.issue_user_token(
            session, role=role, tenant_id=tenant_id, subject=subject, now=ctx.now, lifetime=lifetime
        )
        auditing.record(
            session,
            ctx,
            tenant_id,
            tags.TOKEN_ISSUED,
            resident=resident,
            decision="allow",
            details={"role": role, "expires_in": lifetime},
        )
        session.commit()
        return token

    def rotate_signing_key(self, session: Session, ctx: Context) -> SigningKey:
        """A new token signing key, used at once; the old one stays accepted (and published) for
        one token lifetime more. Audited in every tenant's log: all their tokens are affected."""
        row = self.tokens.signing.create(session, "token", ctx.now)
        for tenant in self.vault.tenants(session):
            auditing.record(session, ctx, tenant.id, tags.SIGNING_KEY_ROTATED, details={"kid": row.kid})
        session.commit()
        return row

    # -- introspection (RFC 7662) and revocation (RFC 7009) ---------------------------------------
    def introspect(
        self, session: Session, ctx: Context, client: AuthenticatedClient, form: Form
    ) -> dict[str, Any]:
        token = one(form, "token", required=True)
        assert token is not None
        outcome = self.guard.check(session, token, ctx.now)
        if not isinstance(outcome, Refusal) and outcome.client_id == client.client_id:
            verified = self.tokens.verify_access_token(session, token, ctx.now)
            answer: dict[str, Any] = {
                "active": True,
                "token_type": "Bearer",
                "iss": self.config.issuer,
                "client_id": verified.client_id,
                "sub": verified.subject,
                "aud": self.config.resource,
                "exp": verified.expires_at,
                "iat": verified.issued_at,
                "jti": verified.jti,
                "authorization_details": verified.claims["authorization_details"],
            }
            if verified.dpop_jkt is not None:
                # RFC 9449 §6.2: a bound token says so, with its key's thumbprint, so that whoever
                # relies on the answer never takes it for a bearer token.
                answer["token_type"] = "DPoP"  # noqa: S105 - a token type, not a secret
                answer["cnf"] = {"jkt": verified.dpop_jkt}
            return answer
        match = REFRESH.match(token)
        grant = session.get(Grant, match.group(1)) if match else None
        if (
            match is not None
            and grant is not None
            and grant.client_id == client.client_id
            and grant.refresh_hash is not None
            and hmac.compare_digest(refresh_hash(match.group(2)), grant.refresh_hash)
            and self._unusable(session, grant, ctx.now) is None
        ):
            return {
                "active": True,
                "token_type": "refresh_token",
                "iss": self.config.issuer,
                "client_id": grant.client_id,
                "exp": int(grant.valid_until.timestamp()),
            }
        return {"active": False}

    def revoke(self, session: Session, ctx: Context, client: AuthenticatedClient, form: Form) -> None:
        """Revoke one of the client's own tokens; anything else is silently ignored (RFC 7009 §2.2)."""
        token = one(form, "token", required=True)
        assert token is not None
        hint = one(form, "token_type_hint")
        kinds = (
            ("refresh_token", "access_token")
            if hint == "refresh_token"
            else ("access_token", "refresh_token")
        )
        for kind in kinds:
            done = (
                self._revoke_access(session, ctx, client, token)
                if kind == "access_token"
                else (self._revoke_refresh(session, ctx, client, token))
            )
            if done:
                return

    def _revoke_access(self, session: Session, ctx: Context, client: AuthenticatedClient, token: str) -> bool:
        try:
            verified = self.tokens.verify_access_token(session, token, ctx.now)
        except InvalidTokenError:
            return False
        if verified.client_id != client.client_id:
            return False
        grant = session.get(Grant, verified.grant_id)
        if grant is None or grant.client_id != client.client_id:
            return False
        # Entries past their token's expiry protect nothing any more (the token is refused anyway).
        session.execute(delete(RevokedToken).where(expired(RevokedToken, ctx.now)))
        if session.get(RevokedToken, verified.jti) is None:
            session.add(
                RevokedToken(
                    jti=verified.jti,
                    tenant_id=grant.tenant_id,
                    grant_id=grant.id,
                    revoked_at=ctx.now,
                    # Past the token's exp by the clock skew tolerated between nodes.
                    expires_at=datetime.fromtimestamp(verified.expires_at + CLOCK_SKEW, UTC),
                )
            )
            self._audit_revoked(session, ctx, grant, "access_token", verified.jti)
        session.commit()
        return True

    def _revoke_refresh(
        self, session: Session, ctx: Context, client: AuthenticatedClient, token: str
    ) -> bool:
        match = REFRESH.match(token)
        grant = session.get(Grant, match.group(1)) if match else None
        if (
            match is None
            or grant is None
            or grant.client_id != client.client_id
            or grant.refresh_hash is None
        ):
            return False
        if not hmac.compare_digest(refresh_hash(match.group(2)), grant.refresh_hash):
            return False
        # RFC 7009 §2.1: revoking a refresh token also invalidates the access tokens of its grant.
        self._stop_refreshing(grant, ctx.now)
        session.add(grant)
        self._audit_revoked(session, ctx, grant, "refresh_token", None)
        session.commit()
        return True

    def _audit_revoked(
        self, session: Session, ctx: Context, grant: Grant, kind: str, jti: str | None
    ) -> None:
        auditing.record(
            session,
            ctx,
            grant.tenant_id,
            tags.TOKEN_REVOKED,
            resident=session.get(Resident, grant.resident_id),
            grant=grant,
            details={"token_type": kind, "token": _jti_hash(jti) if jti else None},
        )


def _jti_hash(jti: str) -> str:
    return hashlib.sha256(jti.encode()).hexdigest()[:32]
