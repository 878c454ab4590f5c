"""Logging in and out.

- OpenID Connect, authorization code flow with PKCE (S256) and a nonce, through authlib's Starlette
  client, against the configured OpenID Provider (in production a DigiD broker). The BSN comes from
  the configured claim of the ID token (or, failing that, of the UserInfo answer).
- The test login (development only; 404 in production): pick a fictitious demo resident.

Either way the session id is replaced at login, and only the resident's opaque id is kept in the
session: never the BSN. Every login is an entry in the resident's own audit trail
(``vault:resident:logged_in``, with the method, committed before the session is bound): the
resident sees it in their history, and a login they did not make stands out there.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from httpx import HTTPError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.types import Scope

from audit import tags
from audit.schemas import Actor
from kluis.api.deps import ServicesDep, trace_of
from kluis.api.ratelimit import per_address
from kluis.settings import Settings
from kluis.web.csrf import require_csrf
from kluis.web.deps import PortalDep, StateDep
from kluis.web.errors import LoginFailedError, PageNotFoundError, TooManyLoginsError
from kluis.web.sessions import SessionState
from kluis.wiring import Services, utcnow
from vault.errors import InvalidInputError, NotFoundError
from vault.models import Tenant
from vault.services import Context

with warnings.catch_warnings():
    # authlib warns at import that it prefers the httpx2 fork when that is not installed; the
    # project uses httpx, which authlib still fully supports. Its own module installs an "always"
    # filter on import, so ours must come after that import.
    import authlib.deprecate

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App

router = APIRouter(prefix="/portaal", include_in_schema=False)
log = logging.getLogger("kluis.web")
HOME = "/portaal/gegevens"
LOGIN = "/portaal/inloggen"
CALLBACK = "/portaal/inloggen/terug"
DEMO_CHOICES = 8
Csrf = Depends(require_csrf)


def login_attempt_wait(request: Request, services: Services) -> int | None:
    """Count a login attempt of the request's address (portal and console share the budget,
    ``KLUIS_LOGIN_RATE_LIMIT_PER_MINUTE``): ``None`` if allowed, else the seconds to wait."""
    wait = per_address(
        services.rate_limiter,
        request,
        "login",
        services.settings.login_rate_limit_per_minute,
        utcnow().timestamp(),
    )
    return None if wait is None else math.ceil(wait)


def new_sessions_admitted(services: Services) -> Callable[[Scope], bool]:
    """``PortalSessionMiddleware``'s ``admit_new`` for portal and console together: a new session
    of a visitor without one counts against ``KLUIS_NEW_SESSION_RATE_LIMIT_PER_MINUTE`` of their
    address."""
    limit = services.settings.new_session_rate_limit_per_minute

    def admit(scope: Scope) -> bool:
        visitor = HTTPConnection(scope)
        try:
            wait = per_address(services.rate_limiter, visitor, "session", limit, utcnow().timestamp())
        except Exception as exc:  # noqa: BLE001 - a shared counter that does not answer (Redis)
            # The page is still shown; only its session is not stored (its form then asks again).
            log.warning("new-session limit unavailable: %s", type(exc).__name__)
            return False
        return wait is None

    return admit


async def limit_logins(request: Request, services: ServicesDep) -> None:
    wait = login_attempt_wait(request, services)
    if wait is not None:
        raise TooManyLoginsError(wait)


LoginLimit = Depends(limit_logins)


def oidc_client(settings: Settings) -> StarletteOAuth2App | None:
    """The OpenID Provider client, or None when no provider is configured."""
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    oauth = OAuth()
    client = oauth.register(
        name="idp",
        server_metadata_url=settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        client_kwargs={"scope": settings.oidc_scope, "code_challenge_method": "S256"},
    )
    assert isinstance(client, StarletteOAuth2App)
    return client


def portal_tenant(session: Session, services: Services) -> Tenant:
    """The municipality this portal serves: the configured one, or the only one there is."""
    slug = services.settings.portal_tenant
    if slug:
        try:
            return services.vault.tenant(session, slug)
        except NotFoundError:
            raise LoginFailedError("unknown_municipality") from None
    tenants = services.vault.tenants(session)
    if len(tenants) != 1:
        raise LoginFailedError("no_single_municipality")
    return tenants[0]


def _logged_in(request: Request, services: Services, bsn: str, method: str) -> tuple[str, str]:
    """(tenant id, resident id) of the resident with this BSN in the portal's municipality, once
    their login is in their audit trail (``method``: ``oidc`` or ``test``)."""
    with services.db.session() as session:
        tenant = portal_tenant(session, services)
        try:
            resident = services.vault.resident_by_bsn(session, tenant.id, bsn)
        except (InvalidInputError, NotFoundError):
            raise LoginFailedError("unknown_resident") from None
        if resident.erased_at is not None:
            raise LoginFailedError("erased_resident")
        actor = Actor(type="resident", id=resident.audit_pseudonym)
        ctx = Context(actor=actor, trace=trace_of(request), now=utcnow())
        services.vault.audit(
            session,
            ctx,
            resident.tenant_id,
            tags.RESIDENT_LOGGED_IN,
            resident=resident,
            details={"method": method},
        )
        session.commit()
        return resident.tenant_id, resident.id


@router.get("")
@router.get("/")
def home(state: StateDep) -> RedirectResponse:
    return RedirectResponse(HOME if state.logged_in else LOGIN, status_code=303)


@router.get("/inloggen")
def login_page(request: Request, portal: PortalDep, services: ServicesDep, state: StateDep) -> Response:
    if state.logged_in:
        return RedirectResponse(HOME, status_code=303)
    return portal.templates.render(
        request,
        "login.html",
        oidc=request.app.state.oidc is not None,
        dev_login=services.settings.dev_login_enabled,
        logged_out=request.query_params.get("uitgelogd") == "1",
    )


@router.get("/inloggen/test")
def dev_login_page(request: Request, portal: PortalDep, services: ServicesDep) -> Response:
    if not services.settings.dev_login_enabled:
        raise PageNotFoundError
    from kluis.demo.setup import valid_bsns

    return portal.templates.render(request, "dev_login.html", demo_bsns=list(valid_bsns(DEMO_CHOICES)))


@router.post("/inloggen/test", dependencies=[LoginLimit, Csrf])
def dev_login(
    request: Request, services: ServicesDep, state: StateDep, bsn: Annotated[str, Form(max_length=9)]
) -> Response:
    if not services.settings.dev_login_enabled:
        raise PageNotFoundError
    state.login(*_logged_in(request, services, bsn.strip(), "test"))
    return RedirectResponse(HOME, status_code=303)


@router.get("/inloggen/oidc", dependencies=[LoginLimit])
async def oidc_start(request: Request, services: ServicesDep) -> Response:
    client: StarletteOAuth2App | None = request.app.state.oidc
    if client is None:
        raise PageNotFoundError
    redirect_uri = services.settings.public_base_url + CALLBACK
    try:
        response: Response = await client.authorize_redirect(request, redirect_uri)
    except (OAuthError, HTTPError):
        raise LoginFailedError("provider_error") from None
    return response


@router.get("/inloggen/terug", dependencies=[LoginLimit])
async def oidc_callback(request: Request, services: ServicesDep, state: StateDep) -> Response:
    client: StarletteOAuth2App | None = request.app.state.oidc
    if client is None:
        raise PageNotFoundError
    try:
        token: dict[str, Any] = await client.authorize_access_token(request)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        claim = services.settings.oidc_bsn_claim
        if claim not in claims:
            claims.update(await client.userinfo(token=token))
    except (OAuthError, HTTPError, ValueError):
        raise LoginFailedError("provider_error") from None
    bsn = claims.get(services.settings.oidc_bsn_claim)
    if not isinstance(bsn, str):
        raise LoginFailedError("no_bsn_claim")
    state.login(*await run_in_threadpool(_logged_in, request, services, bsn, "oidc"))
    return RedirectResponse(HOME, status_code=303)


@router.post("/uitloggen", dependencies=[Csrf])
def logout(state: StateDep) -> RedirectResponse:
    state.logout()
    return RedirectResponse(LOGIN + "?uitgelogd=1", status_code=303)


@router.post("/taal", dependencies=[Csrf])
def switch_language(
    state: StateDep,
    lang: Annotated[str, Form(max_length=2)],
    next_path: Annotated[str, Form(alias="next", max_length=200)] = HOME,
) -> RedirectResponse:
    return language_switched(state, lang, next_path, within="/portaal/", home=HOME)


def language_switched(
    state: SessionState, lang: str, next_path: str, *, within: str, home: str
) -> RedirectResponse:
    """Keep the chosen language in the session and go back to ``next_path`` if it is a page
    under ``within`` (the portal's or the console's), else ``home``: never an open redirect."""
    if lang in ("nl", "en"):
        state.data["lang"] = lang
    safe = next_path if next_path.startswith(within) and "//" not in next_path else home
    return RedirectResponse(safe, status_code=303)
