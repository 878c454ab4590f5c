"""RFC 9457 problem details: the one place where domain errors become HTTP answers.

Every error answer is ``application/problem+json`` with a stable ``type`` URI, a fixed ``title``,
the ``status``, a ``detail`` safe to show (never a BSN, a value or a stack trace), an ``instance``
naming this occurrence, and the request id. Domain packages raise their own exceptions; only this
module knows their HTTP status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from audit import errors as audit_errors
from audit.errors import AuditError
from connectors import errors as connector_errors
from consent import errors as consent_errors
from consent.dpop import DpopProofRefusedError
from vault import errors as vault_errors

log = logging.getLogger("kluis.api")
PROBLEM_TYPE = "urn:kluis:problem:"
MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemKind:
    status: int
    code: str
    title: str
    retry_after: int | None = None  # seconds, sent as ``Retry-After`` (RFC 9110 §10.2.3)


# Most specific first: the first class in the MRO that is listed decides.
DOMAIN_PROBLEMS: dict[type[Exception], ProblemKind] = {
    vault_errors.AccessDeniedError: ProblemKind(403, "access-denied", "Access denied"),
    vault_errors.ResidentErasedError: ProblemKind(410, "erased", "The resident's vault has been erased"),
    vault_errors.NotFoundError: ProblemKind(404, "not-found", "Not found"),
    vault_errors.InvalidInputError: ProblemKind(422, "invalid-input", "Invalid input"),
    vault_errors.ConflictError: ProblemKind(409, "conflict", "Conflict"),
    vault_errors.DecryptionError: ProblemKind(500, "integrity", "Stored data failed its integrity check"),
    vault_errors.KeyProviderError: ProblemKind(503, "key-provider-unavailable", "Key provider unavailable"),
    consent_errors.DepartmentNotFoundError: ProblemKind(404, "not-found", "Not found"),
    consent_errors.DuplicateDepartmentError: ProblemKind(409, "conflict", "Conflict"),
    DpopProofRefusedError: ProblemKind(401, "invalid-dpop-proof", "Invalid or missing DPoP proof"),
    consent_errors.InvalidTokenError: ProblemKind(401, "invalid-token", "Invalid or expired access token"),
    consent_errors.NotFoundError: ProblemKind(404, "not-found", "Not found"),
    consent_errors.InvalidInputError: ProblemKind(422, "invalid-input", "Invalid input"),
    consent_errors.ConflictError: ProblemKind(409, "conflict", "Conflict"),
    consent_errors.NotAllowedError: ProblemKind(403, "not-allowed", "Not allowed"),
    consent_errors.ConsentError: ProblemKind(400, "invalid-request", "Invalid request"),
    audit_errors.ProofRequestError: ProblemKind(400, "invalid-proof-request", "Invalid proof request"),
    audit_errors.InvalidCursorError: ProblemKind(400, "invalid-cursor", "Invalid cursor"),
    consent_errors.InvalidCursorError: ProblemKind(400, "invalid-cursor", "Invalid cursor"),
    audit_errors.UnknownLogError: ProblemKind(404, "not-found", "Not found"),
    AuditError: ProblemKind(503, "audit-unavailable", "The audit log could not record this request"),
    # Source registries (kluis/imports.py: a department's refresh from the BRP or another source).
    connector_errors.UnknownSourceError: ProblemKind(
        404, "no-source", "No source is configured for this category"
    ),
    connector_errors.PersonNotFoundError: ProblemKind(
        404, "person-not-found", "The source does not know this person"
    ),
    connector_errors.SourceUnavailableError: ProblemKind(
        503, "source-unavailable", "The source is unavailable; try again later", retry_after=30
    ),
    connector_errors.ConnectorConfigError: ProblemKind(
        503, "source-not-configured", "The source's connector is not configured correctly"
    ),
    connector_errors.InvalidAnswerError: ProblemKind(
        502, "invalid-source-answer", "The source gave an answer that cannot be stored"
    ),
    connector_errors.ConnectorError: ProblemKind(502, "source-refused", "The source refused the request"),
}

HTTP_TITLES = {
    400: ("invalid-request", "Invalid request"),
    401: ("unauthorized", "Authentication required"),
    403: ("access-denied", "Access denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    411: ("length-required", "Length required"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many requests"),
    431: ("headers-too-large", "Request headers too large"),
}


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or request.scope.get("kluis.request_id", ""))


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    rid = request_id(request)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": f"urn:kluis:request:{rid}" if rid else "urn:kluis:request:unknown",
        "request_id": rid,
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def kind_for(exc: Exception) -> ProblemKind | None:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_PROBLEMS:
            return DOMAIN_PROBLEMS[cls]
    return None


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Name where the input is wrong, never echo what was sent (it may hold personal data).
        errors = [
            {"location": "/".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ][:20]
        return problem(
            request,
            400,
            "invalid-request",
            "Invalid request",
            "the request does not match the API description",
            extra={"errors": errors},
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code, title = HTTP_TITLES.get(exc.status_code, ("error", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem(request, exc.status_code, code, title, detail, headers=getattr(exc, "headers", None))

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        kind = kind_for(exc)
        if kind is None:
            return await on_unexpected(request, exc)
        if kind.status >= 500:
            log.error("request failed: %s", type(exc).__name__, extra={"request_id": request_id(request)})
        headers = dict(getattr(exc, "headers", None) or {})  # e.g. WWW-Authenticate on a 401 (RFC 6750 §3)
        if kind.retry_after is not None:
            headers["Retry-After"] = str(kind.retry_after)
        return problem(
            request,
            kind.status,
            kind.code,
            kind.title,
            str(exc) if kind.status < 500 else kind.title,
            headers=headers or None,
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", type(exc).__name__, extra={"request_id": request_id(request)})
        return problem(
            request,
            500,
            "internal",
            "Internal error",
            "the request could not be completed; quote the request id when reporting it",
        )

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for cls in (
        vault_errors.VaultError,
        consent_errors.ConsentError,
        AuditError,
        connector_errors.ConnectorError,
    ):
        app.add_exception_handler(cls, on_domain)
    app.add_exception_handler(Exception, on_unexpected)
