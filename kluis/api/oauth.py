"""The OAuth 2.0 endpoints over HTTP: backchannel authentication (CIBA), token, introspection,
revocation, server metadata and the token signing keys.

Only parsing and answering happen here; the protocol is ``consent.oauth``. These endpoints answer
errors as RFC 6749 §5.2 JSON (``error``, ``error_description``), not problem+json, because OAuth
client libraries expect that. The body is ``application/x-www-form-urlencoded``; the tenant is the
authenticated client's, never part of the URL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from audit.schemas import Actor
from consent.auditing import client_actor
from consent.dpop import VerifiedProof, verify_proof
from consent.errors import InvalidClientError, InvalidDpopProofError, InvalidRequestError, OAuthError
from consent.oauth import Form, one, parse_backchannel
from consent.schemas import AuthenticatedClient, ClientCredentials
from kluis.api.deps import NowDep, ServicesDep, TraceDep
from kluis.api.ratelimit import RateLimitedError, per_address
from kluis.wiring import Services
from vault.services import Context

router = APIRouter(tags=["oauth"])
T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELDS = 50


def _form_body(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    """OpenAPI description of a form-encoded body (parsed by hand, see ``_form``)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {k: {"type": "string", "description": v} for k, v in fields.items()},
                        "required": required,
                    }
                }
            },
        }
    }


CLIENT_AUTH_FIELDS = {
    "client_id": "For client_secret_post (or to repeat the id of another method).",
    "client_secret": "client_secret_post, development only.",
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer (private_key_jwt).",
    "client_assertion": "A JWT signed with the client's registered key (RFC 7523).",
}
OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 error (`error`, `error_description`)"},
    401: {"description": "invalid_client"},
    429: {
        "description": "Rate limit of the client's address reached (problem+json, `Retry-After`)",
        "content": {"application/problem+json": {}},
    },
}


def oauth_error(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="kluis"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description}, status_code=exc.status, headers=headers
    )


async def _form(request: Request) -> Form:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError("wrong_content_type", "the body must be application/x-www-form-urlencoded")
    try:
        text = (await request.body()).decode("utf-8")
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("malformed_body", "the body is not a valid form") from None


def _credentials(request: Request, form: Form, endpoint: str) -> ClientCredentials:
    basic: tuple[str, str] | None = None
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClientError("unsupported_authorization_scheme")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClientError("basic_malformed") from None
        client_id, separator, secret = decoded.partition(":")
        if not separator:
            raise InvalidClientError("basic_malformed")
        # RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
        basic = (unquote_plus(client_id), unquote_plus(secret))
    return ClientCredentials(
        basic=basic,
        client_id=one(form, "client_id"),
        client_secret=one(form, "client_secret"),
        assertion_type=one(form, "client_assertion_type"),
        assertion=one(form, "client_assertion"),
        endpoint=endpoint,
    )


async def _authenticated(
    request: Request,
    services: Services,
    ctx: Context,
    endpoint: str,
    act: Callable[[Any, Context, AuthenticatedClient, Form], T],
) -> T:
    """Parse the form, authenticate the client, then ``act`` in the same unit of work.

    The database work runs in the thread pool so the event loop keeps serving. Each client address
    has a rate limit here, before anything is parsed or looked up (429 with ``Retry-After``)."""
    wait = per_address(
        services.rate_limiter,
        request,
        "oauth",
        services.settings.oauth_rate_limit_per_minute,
        ctx.now.timestamp(),
    )
    if wait is not None:
        raise RateLimitedError(wait, "too many requests from this address; retry later")
    form = await _form(request)
    credentials = _credentials(request, form, endpoint)

    def work() -> T:
        with services.db.session() as session:
            client = services.clients.authenticate(session, ctx, credentials)
            return act(session, dataclasses.replace(ctx, actor=client_actor(client.client_id)), client, form)

    return await run_in_threadpool(work)


def _dpop_proof(request: Request, endpoint: str, now: datetime) -> VerifiedProof | None:
    """A DPoP proof for this token request (RFC 9449 §5), verified; the token is then bound to it."""
    proofs = request.headers.getlist("dpop")
    if not proofs:
        return None
    if len(proofs) > 1:
        raise InvalidDpopProofError("dpop_proof_repeated")
    return verify_proof(proofs[0], method="POST", url=endpoint, now=now)


def _context(trace: Any, now: Any) -> Context:
    return Context(actor=Actor(type="client", id="unauthenticated"), trace=trace, now=now)


@router.post(
    "/oauth/bc-authorize",
    summary="Ask a resident for consent (OpenID CIBA, poll mode, with RFC 9396 authorization details)",
    responses=OAUTH_ERRORS,
    openapi_extra=_form_body(
        {
            "login_hint": "The resident's BSN.",
            "authorization_details": 'JSON: [{"type": "kluis:records", "categories": [...], '
            '"purpose": "<code>", "duration_days": 90}]',
            "binding_message": "Optional, at most 100 characters, shown to the resident.",
            "requested_expiry": "Optional lifetime of the request in seconds.",
            **CLIENT_AUTH_FIELDS,
        },
        ["login_hint", "authorization_details"],
    ),
)
async def backchannel_authorize(
    request: Request, services: ServicesDep, trace: TraceDep, now: NowDep
) -> JSONResponse:
    def act(session: Any, ctx: Context, client: AuthenticatedClient, form: Form) -> dict[str, Any]:
        try:
            parsed = parse_backchannel(form)
        except OAuthError as exc:
            services.consent.refuse(session, ctx, client, exc)
            raise
        return services.consent.backchannel(session, ctx, client, parsed).public()

    try:
        body = await _authenticated(
            request, services, _context(trace, now), services.oauth.config.backchannel_endpoint, act
        )
    except OAuthError as exc:
        return oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/token",
    summary="Token endpoint: poll a consent request (CIBA) or refresh",
    responses=OAUTH_ERRORS,
    openapi_extra=_form_body(
        {
            "grant_type": "urn:openid:params:grant-type:ciba or refresh_token",
            "auth_req_id": "From /oauth/bc-authorize (CIBA).",
            "refresh_token": "From an earlier token response (refresh_token).",
            **CLIENT_AUTH_FIELDS,
        },
        ["grant_type"],
    ),
)
async def token(request: Request, services: ServicesDep, trace: TraceDep, now: NowDep) -> JSONResponse:
    try:
        proof = _dpop_proof(request, services.oauth.config.token_endpoint, now)

        def act(session: Any, ctx: Context, client: AuthenticatedClient, form: Form) -> dict[str, Any]:
            if proof is not None:
                services.oauth.remember_dpop_proof(session, client, proof.jti, ctx.now)
            jkt = proof.jkt if proof is not None else None
            return services.oauth.token(session, ctx, client, form, dpop_jkt=jkt).public()

        body = await _authenticated(
            request, services, _context(trace, now), services.oauth.config.token_endpoint, act
        )
    except OAuthError as exc:
        return oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/introspect",
    summary="Token introspection (RFC 7662), for the calling client's own tokens",
    responses=OAUTH_ERRORS,
    openapi_extra=_form_body(
        {"token": "An access or refresh token.", "token_type_hint": "Optional.", **CLIENT_AUTH_FIELDS},
        ["token"],
    ),
)
async def introspect(request: Request, services: ServicesDep, trace: TraceDep, now: NowDep) -> JSONResponse:
    def act(session: Any, ctx: Context, client: AuthenticatedClient, form: Form) -> dict[str, Any]:
        return services.oauth.introspect(session, ctx, client, form)

    try:
        body = await _authenticated(
            request, services, _context(trace, now), services.oauth.config.introspection_endpoint, act
        )
    except OAuthError as exc:
        return oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    summary="Token revocation (RFC 7009), for the calling client's own tokens",
    responses=OAUTH_ERRORS,
    openapi_extra=_form_body(
        {"token": "An access or refresh token.", "token_type_hint": "Optional.", **CLIENT_AUTH_FIELDS},
        ["token"],
    ),
)
async def revoke(request: Request, services: ServicesDep, trace: TraceDep, now: NowDep) -> Response:
    def act(session: Any, ctx: Context, client: AuthenticatedClient, form: Form) -> None:
        services.oauth.revoke(session, ctx, client, form)

    try:
        await _authenticated(
            request, services, _context(trace, now), services.oauth.config.revocation_endpoint, act
        )
    except OAuthError as exc:
        return oauth_error(exc)
    return Response(status_code=200, headers=NO_STORE)


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata (RFC 8414)",
)
def metadata(services: ServicesDep) -> JSONResponse:
    return JSONResponse(services.oauth.metadata(), headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/jwks.json", summary="The public keys that sign access tokens (JWKS)")
def jwks(services: ServicesDep, now: NowDep) -> JSONResponse:
    with services.db.read_session() as session:
        body = services.oauth.tokens.public_jwks(session, now)
    # Short: a rotation publishes the new key at once and signs with it right away.
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=60"})
