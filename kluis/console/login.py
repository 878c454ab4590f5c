"""Privacy officers log in and out of the console.

- OpenID Connect at the portal's OpenID Provider (``kluis.web.login``'s client, code flow with PKCE
  and a nonce), with the console's own callback. The role claim (``KLUIS_OIDC_ROLE_CLAIM``, a string
  or a list) must hold ``privacy_officer``; the municipality comes from ``KLUIS_OIDC_TENANT_CLAIM``
  if set, else it is the portal's municipality. The officer is known by the provider's ``sub``.
- The test login (development only; 404 in production): pick a municipality, give a name.

Either way the portal's session mechanism is used (database-backed, id replaced at login, CSRF),
bound to a role (``SessionState.login_role``) instead of a resident. Every login is an entry in the
municipality's audit trail (``audit:officer:logged_in``, committed before the session is bound):
who could read the whole trail, and since when, is part of it.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from httpx import HTTPError
from starlette.concurrency import run_in_threadpool

from kluis.api.deps import ServicesDep
from kluis.console.deps import Console, ConsoleDep, context
from kluis.console.errors import NotFoundError, OfficerLoginFailedError, OfficerTooManyLoginsError
from kluis.console.schemas import ROLE, Officer
from kluis.web.csrf import require_csrf
from kluis.web.deps import StateDep
from kluis.web.errors import LoginFailedError
from kluis.web.login import language_switched, login_attempt_wait, portal_tenant
from kluis.wiring import Services, utcnow
from vault.errors import NotFoundError as VaultNotFoundError
from vault.models import Tenant

with warnings.catch_warnings():
    # As in kluis.web.login: authlib warns at import about the httpx2 fork (httpx stays supported).
    import authlib.deprecate

    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.starlette_client import StarletteOAuth2App

router = APIRouter(prefix="/fg", include_in_schema=False)
HOME = "/fg/overzicht"
LOGIN = "/fg/inloggen"
CALLBACK = "/fg/inloggen/terug"
Csrf = Depends(require_csrf)


async def limit_logins(request: Request, services: ServicesDep) -> None:
    """The portal's limit per address (one budget for both logins), answered as a console page."""
    wait = login_attempt_wait(request, services)
    if wait is not None:
        raise OfficerTooManyLoginsError(wait)


LoginLimit = Depends(limit_logins)
NAME = re.compile(r"^[A-Za-z0-9 ._'-]{1,60}$")


def has_role(claims: dict[str, Any], claim: str) -> bool:
    """Whether the role claim (a list, or a space-separated string) names the privacy officer."""
    value = claims.get(claim)
    if isinstance(value, str):
        return ROLE in value.split()
    return isinstance(value, list) and ROLE in value


def officer_tenant(services: Services, claims: dict[str, Any]) -> Tenant:
    """The municipality of an officer: from the tenant claim if configured, else the portal's."""
    with services.db.read_session() as session:
        claim = services.settings.oidc_tenant_claim
        if claim:
            slug = claims.get(claim)
            if not isinstance(slug, str):
                raise OfficerLoginFailedError("no_municipality_claim")
            try:
                return services.vault.tenant(session, slug)
            except VaultNotFoundError:
                raise OfficerLoginFailedError("unknown_municipality") from None
        try:
            return portal_tenant(session, services)
        except LoginFailedError:
            raise OfficerLoginFailedError("no_municipality") from None


def _log_in(
    request: Request, services: Services, state: Any, tenant: Tenant, subject: str, method: str
) -> RedirectResponse:
    """Bind the session to the officer, once the login is in the tenant's audit trail."""
    console: Console = request.app.state.console
    ctx = context(request, Officer(tenant.id, subject, tenant.name), utcnow())
    with services.db.session() as session:
        console.service.log_login(session, ctx, tenant.id, method)
    state.login_role(tenant.id, ROLE, subject)
    state.data["tenant_name"] = tenant.name
    return RedirectResponse(HOME, status_code=303)


@router.get("")
@router.get("/")
def home(state: StateDep) -> RedirectResponse:
    return RedirectResponse(HOME if state.data.get("role") == ROLE else LOGIN, status_code=303)


@router.get("/inloggen")
def login_page(request: Request, console: ConsoleDep, services: ServicesDep) -> Response:
    return console.templates.render(
        request,
        "console/login.html",
        oidc=request.app.state.oidc is not None,
        dev_login=services.settings.dev_login_enabled,
        logged_out=request.query_params.get("uitgelogd") == "1",
    )


@router.get("/inloggen/test")
def dev_login_page(request: Request, console: ConsoleDep, services: ServicesDep) -> Response:
    if not services.settings.dev_login_enabled:
        raise NotFoundError
    with services.db.read_session() as session:
        tenants = [(t.slug, t.name) for t in services.vault.tenants(session)]
    return console.templates.render(request, "console/dev_login.html", tenants=tenants)


@router.post("/inloggen/test", dependencies=[LoginLimit, Csrf])
def dev_login(
    request: Request,
    services: ServicesDep,
    state: StateDep,
    tenant: Annotated[str, Form(max_length=63)],
    name: Annotated[str, Form(max_length=60)] = "test",
) -> Response:
    if not services.settings.dev_login_enabled:
        raise NotFoundError
    if not NAME.match(name.strip()):
        raise OfficerLoginFailedError("invalid_name")
    with services.db.read_session() as session:
        try:
            found = services.vault.tenant(session, tenant)
        except VaultNotFoundError:
            raise OfficerLoginFailedError("unknown_municipality") from None
    return _log_in(request, services, state, found, "dev:" + name.strip(), "test")


@router.get("/inloggen/oidc", dependencies=[LoginLimit])
async def oidc_start(request: Request, services: ServicesDep) -> Response:
    client: StarletteOAuth2App | None = request.app.state.oidc
    if client is None:
        raise NotFoundError
    try:
        response: Response = await client.authorize_redirect(
            request, services.settings.public_base_url + CALLBACK
        )
    except (OAuthError, HTTPError):
        raise OfficerLoginFailedError("provider_error") from None
    return response


@router.get("/inloggen/terug", dependencies=[LoginLimit])
async def oidc_callback(request: Request, services: ServicesDep, state: StateDep) -> Response:
    client: StarletteOAuth2App | None = request.app.state.oidc
    if client is None:
        raise NotFoundError
    role_claim = services.settings.oidc_role_claim
    try:
        token: dict[str, Any] = await client.authorize_access_token(request)
        claims: dict[str, Any] = dict(token.get("userinfo") or {})
        if role_claim not in claims:
            claims.update(await client.userinfo(token=token))
    except (OAuthError, HTTPError, ValueError):
        raise OfficerLoginFailedError("provider_error") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 120:
        raise OfficerLoginFailedError("invalid_subject")
    if not has_role(claims, role_claim):
        raise OfficerLoginFailedError("role_missing")
    tenant = officer_tenant(services, claims)
    return await run_in_threadpool(_log_in, request, services, state, tenant, "oidc:" + subject, "oidc")


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
    return language_switched(state, lang, next_path, within="/fg/", home=HOME)
