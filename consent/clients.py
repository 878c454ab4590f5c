"""OAuth clients of departments: registration and client authentication.

Methods (RFC 6749 §2.3, RFC 7523): ``private_key_jwt`` with a registered JWKS or JWKS URL (the
production method), and for development ``client_secret_basic`` / ``client_secret_post``. Secrets
are 256-bit random values, stored only as a SHA-256 digest: a slow password hash adds nothing
against guessing a value of that entropy and would cost every token request.

A failed authentication of a known client is audited in that client's tenant, in its own committed
transaction; an unknown client has no tenant to be audited in and is only logged (without values).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from audit import tags
from consent import auditing
from consent.assertions import LEEWAY, unverified_subject, verify_assertion
from consent.errors import (
    DepartmentNotFoundError,
    InvalidClientConfigError,
    InvalidClientError,
    InvalidRequestError,
    NotAllowedError,
)
from consent.jwks import JwksCache, JwksFetcher, validate_jwks
from consent.models import Client, Department, UsedAssertion, expired
from consent.schemas import ASSERTION_TYPE, AuthenticatedClient, AuthMethod, ClientCredentials, OAuthConfig
from consent.tokens import CLOCK_SKEW, b64url_json
from vault.models import Tenant
from vault.services import Context, new_id

log = logging.getLogger("kluis.consent")
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SECRET_TAG = b"kluis-client-secret-v1:"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(SECRET_TAG + secret.encode("utf-8", "surrogatepass")).digest()


class ClientService:
    def __init__(self, config: OAuthConfig, jwks_fetcher: JwksFetcher | None = None) -> None:
        self.config = config
        self.jwks_cache = JwksCache(jwks_fetcher)

    # -- registration -----------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        ctx: Context,
        tenant: Tenant,
        department_code: str,
        *,
        jwks: Any = None,
        jwks_uri: str | None = None,
        secret: bool = False,
        dpop: bool = False,
        name: str | None = None,
    ) -> tuple[Client, str | None]:
        """Register a client of a department; returns it and, for secret clients, the secret
        (shown once, never stored)."""
        department = session.exec(
            select(Department).where(Department.tenant_id == tenant.id, Department.code == department_code)
        ).first()
        if department is None:
            raise DepartmentNotFoundError
        methods = sum(x is not None and x is not False for x in (jwks, jwks_uri, secret or None))
        if methods != 1:
            raise InvalidClientConfigError("give exactly one of a JWKS, a JWKS URL or a secret")
        if secret and not self.config.allow_client_secret:
            raise NotAllowedError(
                "client secrets are for development only (KLUIS_ALLOW_CLIENT_SECRET_IN_PRODUCTION)"
            )
        display = (name or department.name).strip()
        if not display or len(display) > 200:
            raise InvalidClientConfigError("a client needs a name of at most 200 characters")
        client = Client(
            id=new_id(),
            tenant_id=tenant.id,
            department_id=department.id,
            name=display,
            auth_method="client_secret_basic" if secret else "private_key_jwt",
            dpop_bound=dpop,
            created_at=ctx.now,
        )
        plain: str | None = None
        if secret:
            plain = secrets.token_urlsafe(32)
            client.secret_hash = hash_secret(plain)
        elif jwks is not None:
            client.jwks = json.dumps({"keys": validate_jwks(jwks)}, sort_keys=True)
        else:
            assert jwks_uri is not None
            client.jwks_uri = self._check_jwks_uri(jwks_uri)
        session.add(client)
        session.flush()
        auditing.record(
            session,
            ctx,
            tenant.id,
            tags.CLIENT_CREATED,
            client_id=client.id,
            department=department.code,
            details={"auth_method": client.auth_method, "dpop_bound": dpop},
        )
        session.commit()
        return client, plain

    def _check_jwks_uri(self, url: str) -> str:
        parts = urlsplit(url)
        allowed = ("https",) if self.config.production else ("https", "http")
        if parts.scheme not in allowed or not parts.hostname or len(url) > 2000:
            raise InvalidClientConfigError("the JWKS URL must be an https:// URL")
        return url

    def list(self, session: Session, tenant_id: str) -> list[tuple[Client, Department]]:
        rows = session.exec(
            select(Client, Department)
            .join(Department, col(Department.id) == col(Client.department_id))
            .where(Client.tenant_id == tenant_id)
            .order_by(col(Department.code), col(Client.created_at))
        ).all()
        return [(c, d) for c, d in rows]

    # -- authentication ---------------------------------------------------------------------------
    def authenticate(
        self, session: Session, ctx: Context, credentials: ClientCredentials
    ) -> AuthenticatedClient:
        """Authenticate the client of a request, or raise ``InvalidClientError`` (audited).

        Commits: the ``jti`` of an accepted assertion is durable before the request goes on, so an
        assertion can never be replayed, not even when the rest of the request fails.
        """
        method, client_id = self._method(credentials)
        client = session.get(Client, client_id) if CLIENT_ID.match(client_id) else None
        if client is None:
            hash_secret(credentials.client_secret or "")  # similar work for unknown and known ids
            log.info("client authentication failed: unknown client")
            raise InvalidClientError("unknown_client")
        department = session.get(Department, client.department_id)
        assert department is not None
        try:
            self._check(session, client, method, credentials, ctx.now)
            session.commit()
        except InvalidClientError as exc:
            self._audit_failure(session, ctx, client, department, exc.reason)
            raise
        except IntegrityError:
            # Two requests raced with the same assertion: the second commit lost.
            self._audit_failure(session, ctx, client, department, "assertion_replayed")
            raise InvalidClientError("assertion_replayed") from None
        return AuthenticatedClient(
            client_id=client.id,
            tenant_id=client.tenant_id,
            department_id=client.department_id,
            department_code=department.code,
            method=method,
            dpop_bound=client.dpop_bound,
        )

    def _method(self, credentials: ClientCredentials) -> tuple[AuthMethod, str]:
        present = [
            credentials.basic is not None,
            credentials.client_secret is not None,
            credentials.assertion is not None or credentials.assertion_type is not None,
        ]
        if sum(present) > 1:
            raise InvalidRequestError("several_client_auth_methods")
        if credentials.basic is not None:
            basic_id = credentials.basic[0]
            if credentials.client_id is not None and credentials.client_id != basic_id:
                raise InvalidRequestError("client_id_mismatch")
            return "client_secret_basic", basic_id
        if credentials.client_secret is not None:
            if credentials.client_id is None:
                raise InvalidClientError("no_client_id")
            return "client_secret_post", credentials.client_id
        if credentials.assertion is not None or credentials.assertion_type is not None:
            if credentials.assertion_type != ASSERTION_TYPE or not credentials.assertion:
                raise InvalidClientError("unsupported_assertion_type")
            subject = unverified_subject(credentials.assertion)
            if credentials.client_id is not None and subject not in (None, credentials.client_id):
                raise InvalidClientError("client_id_mismatch")
            found = subject or credentials.client_id
            if found is None:
                raise InvalidClientError("assertion_malformed")
            # An unreadable assertion with a client_id is that client's failure (audited as such).
            return "private_key_jwt", found
        raise InvalidClientError("no_client_authentication")

    def _check(
        self,
        session: Session,
        client: Client,
        method: AuthMethod,
        credentials: ClientCredentials,
        now: datetime,
    ) -> None:
        if client.disabled_at is not None:
            raise InvalidClientError("client_disabled")
        if method == "private_key_jwt":
            if client.auth_method != "private_key_jwt":
                raise InvalidClientError("wrong_auth_method")
            assert credentials.assertion is not None
            self._check_assertion(session, client, credentials, now)
            return
        if client.auth_method != "client_secret_basic" or client.secret_hash is None:
            raise InvalidClientError("wrong_auth_method")
        if not self.config.allow_client_secret:
            raise InvalidClientError("client_secret_refused_in_production")
        secret = credentials.basic[1] if credentials.basic is not None else credentials.client_secret
        if not hmac.compare_digest(hash_secret(secret or ""), client.secret_hash):
            raise InvalidClientError("wrong_secret")

    def _check_assertion(
        self, session: Session, client: Client, credentials: ClientCredentials, now: datetime
    ) -> None:
        assert credentials.assertion is not None
        if client.jwks is not None:
            keys: list[dict[str, Any]] = json.loads(client.jwks)["keys"]
        elif client.jwks_uri is not None:
            keys = self.jwks_cache.keys(client.jwks_uri, _kid(credentials.assertion))
        else:
            raise InvalidClientError("no_keys_registered")
        epoch = int(now.timestamp())
        # Expired ids of this client can go: an assertion past its exp (and the leeway the check
        # allows after it) is refused anyway.
        session.execute(
            delete(UsedAssertion).where(
                col(UsedAssertion.client_id) == client.id, expired(UsedAssertion, now)
            )
        )

        def remember(jti: str, exp: int) -> bool:
            if session.get(UsedAssertion, (client.id, jti)) is not None:
                return False
            # Kept as long as the assertion passes the check, which allows LEEWAY after its exp
            # (forgotten at its exp, it could be replayed in that minute), and the clock skew
            # tolerated between nodes.
            expires = datetime.fromtimestamp(max(exp + LEEWAY + CLOCK_SKEW, epoch), UTC)
            session.add(UsedAssertion(client_id=client.id, jti=jti, expires_at=expires))
            session.flush()
            return True

        verify_assertion(
            credentials.assertion,
            client_id=client.id,
            keys=keys,
            audiences=self.config.assertion_audiences(credentials.endpoint),
            now=epoch,
            remember_jti=remember,
        )

    def _audit_failure(
        self, session: Session, ctx: Context, client: Client, department: Department, reason: str
    ) -> None:
        session.rollback()
        auditing.record(
            session,
            dataclasses.replace(ctx, actor=auditing.client_actor(client.id)),
            client.tenant_id,
            tags.CLIENT_AUTH_FAILED,
            client_id=client.id,
            department=department.code,
            decision="deny",
            reason=reason,
        )
        session.commit()


def _kid(assertion: str) -> str | None:
    try:
        header = b64url_json(assertion.split(".", 1)[0])
    except ValueError:
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
