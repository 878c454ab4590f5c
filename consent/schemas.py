"""Values of the consent engine: configuration, principals, parsed requests, answers. Frozen, ORM-free."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RECORDS_TYPE = "kluis:records"  # the RFC 9396 authorization details type of Kluis
CIBA_GRANT = "urn:openid:params:grant-type:ciba"
REFRESH_GRANT = "refresh_token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# GDPR art. 6(1) (a) to (f). Anything but consent also needs the statute that requires it.
LEGAL_BASES: dict[str, str] = {
    "consent": "GDPR art. 6(1)(a)",
    "contract": "GDPR art. 6(1)(b)",
    "legal_obligation": "GDPR art. 6(1)(c)",
    "vital_interests": "GDPR art. 6(1)(d)",
    "public_task": "GDPR art. 6(1)(e)",
    "legitimate_interests": "GDPR art. 6(1)(f)",
}

AuthMethod = Literal["private_key_jwt", "client_secret_basic", "client_secret_post"]
RequestStatus = Literal["pending", "approved", "denied", "expired"]
GrantStatus = Literal["active", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    """Where the authorization server lives and its time limits (from ``Settings``)."""

    issuer: str
    base_url: str
    access_token_lifetime: int = 300
    request_lifetime: int = 3600
    poll_interval: int = 2
    production: bool = False
    allow_client_secret: bool = True  # False in production unless explicitly allowed

    @property
    def token_endpoint(self) -> str:
        return self.base_url + "/oauth/token"

    @property
    def backchannel_endpoint(self) -> str:
        return self.base_url + "/oauth/bc-authorize"

    @property
    def introspection_endpoint(self) -> str:
        return self.base_url + "/oauth/introspect"

    @property
    def revocation_endpoint(self) -> str:
        return self.base_url + "/oauth/revoke"

    @property
    def jwks_uri(self) -> str:
        return self.base_url + "/.well-known/jwks.json"

    @property
    def resource(self) -> str:
        """The audience of access tokens: the department data API (RFC 8707 resource indicator)."""
        return self.base_url + "/api/v1"

    @property
    def user_audience(self) -> str:
        """The audience of resident and privacy-officer tokens (never accepted as access tokens)."""
        return self.base_url + "/api/v1/me"

    def assertion_audiences(self, endpoint: str | None = None) -> list[str]:
        """RFC 7523 §3: the issuer, the token endpoint, or the endpoint called."""
        audiences = [self.issuer, self.token_endpoint]
        if endpoint and endpoint not in audiences:
            audiences.append(endpoint)
        return audiences


@dataclass(frozen=True, slots=True)
class ResidentPrincipal:
    """An authenticated resident: tenant and the opaque resident id (never the BSN)."""

    tenant_id: str
    resident_id: str


@dataclass(frozen=True, slots=True)
class PrivacyOfficerPrincipal:
    """An authenticated privacy officer (FG) of one tenant."""

    tenant_id: str
    subject: str


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request presented to authenticate its client, as the web layer found it.

    ``basic`` is the decoded ``Authorization: Basic`` pair; the form fields are the rest.
    """

    basic: tuple[str, str] | None = None
    client_id: str | None = None
    client_secret: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None
    endpoint: str | None = None  # the URL called, an acceptable assertion audience


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    """A client whose credentials checked out: ids of its tenant and department."""

    client_id: str
    tenant_id: str
    department_id: str
    department_code: str
    method: AuthMethod
    dpop_bound: bool


@dataclass(frozen=True, slots=True)
class RecordsDetail:
    """One ``kluis:records`` authorization detail (RFC 9396) as asked for."""

    categories: tuple[str, ...]
    purpose: str
    duration_days: int | None = None


@dataclass(frozen=True, slots=True)
class BackchannelRequest:
    """A parsed ``/oauth/bc-authorize`` request (CIBA §7.1)."""

    login_hint: str
    detail: RecordsDetail
    binding_message: str | None = None
    requested_expiry: int | None = None


@dataclass(frozen=True, slots=True)
class BackchannelResponse:
    auth_req_id: str
    expires_in: int
    interval: int

    def public(self) -> dict[str, Any]:
        return {"auth_req_id": self.auth_req_id, "expires_in": self.expires_in, "interval": self.interval}


@dataclass(frozen=True, slots=True)
class TokenResponse:
    access_token: str
    expires_in: int
    refresh_token: str | None
    authorization_details: list[dict[str, Any]]
    token_type: str = "Bearer"  # noqa: S105 - the name of a token type, not a secret

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "authorization_details": self.authorization_details,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of an access token whose signature, issuer, audience, type and time checked out."""

    jti: str
    client_id: str
    tenant_id: str
    grant_id: str
    resident_id: str
    subject: str
    issued_at: int
    expires_at: int
    claims: dict[str, Any] = field(compare=False, hash=False)

    @property
    def dpop_jkt(self) -> str | None:
        cnf = self.claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        return jkt if isinstance(jkt, str) else None


@dataclass(frozen=True, slots=True)
class UserClaims:
    """A verified resident or privacy-officer token."""

    role: Literal["resident", "privacy_officer"]
    tenant_id: str
    subject: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a keyset-paginated list; ``next_cursor`` is opaque."""

    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RequestView:
    """A consent request as its resident sees it."""

    id: str
    status: RequestStatus
    department_code: str
    department_name: str
    purpose_code: str
    purpose_description_nl: str
    purpose_description_en: str
    legal_basis: str
    categories: tuple[str, ...]
    writable_categories: tuple[str, ...]
    duration_days: int
    binding_message: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    grant_id: str | None


@dataclass(frozen=True, slots=True)
class GrantView:
    """A grant as its resident sees it."""

    id: str
    status: GrantStatus
    department_code: str
    department_name: str
    purpose_code: str
    purpose_description_nl: str
    purpose_description_en: str
    legal_basis: str
    categories: tuple[str, ...]
    may_write: tuple[str, ...]
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None
    request_id: str
    created_at: datetime
