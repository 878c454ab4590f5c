"""Errors of the consent engine and OAuth server.

    ConsentError
    ├── DepartmentNotFoundError
    ├── DuplicateDepartmentError
    ├── InvalidDepartmentError
    ├── NotFoundError                      404 for the resident API; never says "not yours"
    │   ├── ClientNotFoundError
    │   ├── PurposeNotFoundError
    │   ├── RequestNotFoundError
    │   └── GrantNotFoundError
    ├── InvalidInputError                  refused before anything is written (422)
    │   ├── InvalidClientConfigError       bad JWKS, JWKS URL, department...
    │   ├── InvalidPurposeError
    │   └── InvalidDecisionError           a narrowing that widens, a date in the past...
    ├── InvalidCursorError                 a pagination cursor we did not hand out
    ├── ConflictError                      409
    │   ├── DuplicatePurposeError
    │   └── RequestNotPendingError         already decided or expired
    ├── NotAllowedError                    refused by policy (403): dev tokens or secrets in production
    ├── InvalidTokenError                  a bearer token that is missing, malformed, forged or expired (401)
    │   └── DpopProofRefusedError          a bound token at the data API without a valid proof (401)
    └── OAuthError                         an RFC 6749 error of the OAuth endpoints (``error`` + status)
        ├── InvalidClientError             401 invalid_client
        ├── InvalidRequestError            400 invalid_request
        ├── InvalidGrantError              400 invalid_grant
        ├── UnauthorizedClientError        400 unauthorized_client
        ├── InvalidAuthorizationDetailsError 400 invalid_authorization_details (RFC 9396)
        ├── UnsupportedGrantTypeError      400 unsupported_grant_type
        ├── UnsupportedTokenTypeError      400 unsupported_token_type (RFC 7009)
        ├── InvalidBindingMessageError     400 invalid_binding_message (CIBA §13)
        ├── InvalidDpopProofError          400 invalid_dpop_proof (RFC 9449)
        └── PollError                      400, the CIBA poll answers (RFC 8628 / CIBA §11)
            ├── AuthorizationPendingError  authorization_pending
            ├── SlowDownError              slow_down
            ├── RequestDeniedError         access_denied
            └── RequestExpiredError        expired_token

A refusal of a department's *grant* (revoked, expired, erased, another department) is the vault's
``AccessDeniedError(reason)``: the vault defines the access decision, consent produces or refuses it.

Messages are fixed and safe to show: never a BSN, a name, a token or a secret. The precise reason
of a refusal is a code (``reason``) for the audit entry and the log.
"""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every consent error."""


class DepartmentNotFoundError(ConsentError):
    def __init__(self) -> None:
        super().__init__("unknown department")


class DuplicateDepartmentError(ConsentError):
    def __init__(self) -> None:
        super().__init__("this department already exists in this municipality")


class InvalidDepartmentError(ConsentError):
    pass


class NotFoundError(ConsentError):
    pass


class ClientNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("unknown client")


class PurposeNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("unknown purpose")


class RequestNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("no such consent request")


class GrantNotFoundError(NotFoundError):
    def __init__(self) -> None:
        super().__init__("no such grant")


class InvalidInputError(ConsentError):
    pass


class InvalidClientConfigError(InvalidInputError):
    pass


class InvalidPurposeError(InvalidInputError):
    pass


class InvalidDecisionError(InvalidInputError):
    pass


class InvalidCursorError(ConsentError):
    """A pagination cursor this service did not hand out (400, like any malformed parameter)."""

    def __init__(self) -> None:
        super().__init__("invalid cursor")


class ConflictError(ConsentError):
    pass


class DuplicatePurposeError(ConflictError):
    def __init__(self) -> None:
        super().__init__("this purpose is already registered in this municipality")


class RequestNotPendingError(ConflictError):
    def __init__(self) -> None:
        super().__init__("this consent request is no longer pending")


class NotAllowedError(ConsentError):
    pass


class InvalidTokenError(ConsentError):
    """The bearer token cannot be used. ``reason`` is a code for the audit log, never shown."""

    message = "the access token is missing, invalid or expired"

    def __init__(self, reason: str = "invalid_token") -> None:
        super().__init__(self.message)
        self.reason = reason
        self.headers = {"WWW-Authenticate": self.challenge()}

    def challenge(self) -> str:
        # RFC 6750 §3: a 401 names the scheme, and the error code unless no token was sent at all.
        return 'Bearer realm="kluis"' if self.reason == "token_missing" else 'Bearer error="invalid_token"'


class OAuthError(ConsentError):
    """An error answer of an OAuth endpoint (RFC 6749 §5.2): ``error`` code, HTTP status, fixed text.

    ``reason`` is a more precise code for the audit entry; it is not sent to the client.
    """

    error = "invalid_request"
    status = 400
    description = "the request is invalid"

    def __init__(self, reason: str | None = None, description: str | None = None) -> None:
        super().__init__(description or self.description)
        self.reason = reason or self.error
        if description is not None:
            self.description = description


class InvalidClientError(OAuthError):
    error = "invalid_client"
    status = 401
    description = "client authentication failed"


class InvalidRequestError(OAuthError):
    error = "invalid_request"
    description = "the request is missing a parameter or has an invalid one"


class InvalidGrantError(OAuthError):
    error = "invalid_grant"
    description = "the grant is invalid, expired, revoked or was issued to another client"


class UnauthorizedClientError(OAuthError):
    error = "unauthorized_client"
    description = "the client is not allowed to do this"


class InvalidAuthorizationDetailsError(OAuthError):
    error = "invalid_authorization_details"
    description = "the authorization details are invalid"


class UnsupportedGrantTypeError(OAuthError):
    error = "unsupported_grant_type"
    description = "this grant type is not supported"


class UnsupportedTokenTypeError(OAuthError):
    error = "unsupported_token_type"
    description = "this token type cannot be revoked"


class InvalidBindingMessageError(OAuthError):
    error = "invalid_binding_message"
    description = "the binding message must be 1 to 100 printable characters"


class InvalidDpopProofError(OAuthError):
    error = "invalid_dpop_proof"
    description = "this client needs a valid DPoP proof"


class PollError(OAuthError):
    """An answer to a CIBA poll that is not a token."""


class AuthorizationPendingError(PollError):
    error = "authorization_pending"
    description = "the resident has not decided yet"


class SlowDownError(PollError):
    error = "slow_down"
    description = "polling too fast: wait at least the interval between requests"


class RequestDeniedError(PollError):
    error = "access_denied"
    description = "the resident denied the request"


class RequestExpiredError(PollError):
    error = "expired_token"
    description = "the consent request has expired"
